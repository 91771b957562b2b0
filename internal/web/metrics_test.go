package web

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// exposition is a parsed Prometheus text exposition.
type exposition struct {
	types   map[string]string  // family -> gauge, counter, ...
	samples map[string]float64 // series (name{labels} as written) -> value
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// parseExposition checks text against the text format (version 0.0.4) as
// this package writes it: every family has HELP then TYPE before its
// samples, families are not interleaved or repeated, every sample belongs
// to the family declared last, label values are quoted with \\, \" and \n
// escapes only, no series repeats, values are floats.
func parseExposition(text string) (*exposition, error) {
	e := &exposition{types: map[string]string{}, samples: map[string]float64{}}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("exposition does not end with a newline")
	}
	var current, helped string
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(format string, a ...any) error {
			return fmt.Errorf("line %d %q: %s", i+1, line, fmt.Sprintf(format, a...))
		}
		switch {
		case strings.HasPrefix(line, "# HELP "):
			f := strings.SplitN(strings.TrimPrefix(line, "# HELP "), " ", 2)
			if len(f) != 2 || !metricName.MatchString(f[0]) || f[1] == "" {
				return nil, fail("bad HELP")
			}
			if _, seen := e.types[f[0]]; seen {
				return nil, fail("family %s declared twice", f[0])
			}
			if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(f[1], `\\`, ""), `\n`, ""), `\`) {
				return nil, fail("bad escape in HELP")
			}
			helped = f[0]
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(strings.TrimPrefix(line, "# TYPE "))
			if len(f) != 2 || f[0] != helped {
				return nil, fail("TYPE not right after the family's HELP")
			}
			switch f[1] {
			case "gauge", "counter":
			default:
				return nil, fail("type %s", f[1])
			}
			e.types[f[0]], current = f[1], f[0]
		case strings.HasPrefix(line, "#") || line == "":
			return nil, fail("unexpected comment or blank line")
		default:
			name, labels, value, err := splitSample(line)
			if err != nil {
				return nil, fail("%v", err)
			}
			if name != current {
				return nil, fail("sample of %s outside its family (current %q)", name, current)
			}
			if e.types[name] == "counter" && !strings.HasSuffix(name, "_total") {
				return nil, fail("counter without _total")
			}
			series := name
			if labels != "" {
				series += "{" + labels + "}"
			}
			if _, dup := e.samples[series]; dup {
				return nil, fail("series repeated")
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil && value != "+Inf" && value != "-Inf" && value != "NaN" {
				return nil, fail("value %q", value)
			}
			if e.types[name] == "counter" && (v < 0 || math.IsNaN(v)) {
				return nil, fail("counter value %v", v)
			}
			e.samples[series] = v
		}
	}
	return e, nil
}

// splitSample parses name{l="v",...} value, checking the label syntax; it
// returns the labels as written between the braces.
func splitSample(line string) (name, labels, value string, err error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", "", "", fmt.Errorf("no value")
	}
	name, rest := line[:i], line[i:]
	if !metricName.MatchString(name) {
		return "", "", "", fmt.Errorf("metric name %q", name)
	}
	if rest[0] == '{' {
		j := 1
		for {
			k := strings.Index(rest[j:], `="`)
			if k < 0 || !labelName.MatchString(rest[j:j+k]) {
				return "", "", "", fmt.Errorf("label name at %q", rest[j:])
			}
			j += k + 2
			for ; ; j++ {
				if j >= len(rest) {
					return "", "", "", fmt.Errorf("unterminated label value")
				}
				if rest[j] == '\\' {
					if j+1 >= len(rest) || !strings.ContainsRune(`\"n`, rune(rest[j+1])) {
						return "", "", "", fmt.Errorf("bad escape in label value")
					}
					j++
					continue
				}
				if rest[j] == '"' {
					break
				}
			}
			j++
			if j < len(rest) && rest[j] == ',' {
				j++
				continue
			}
			if j < len(rest) && rest[j] == '}' {
				break
			}
			return "", "", "", fmt.Errorf("after label value: %q", rest[j:])
		}
		labels, rest = rest[1:j], rest[j+1:]
	}
	if len(rest) < 2 || rest[0] != ' ' || strings.Contains(rest[1:], " ") {
		return "", "", "", fmt.Errorf("value part %q", rest)
	}
	return name, labels, rest[1:], nil
}

func scrape(t *testing.T, url string) *exposition {
	t.Helper()
	code, h, body := get(t, url+"/metrics")
	if code != 200 || h.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("GET /metrics: %d %q", code, h.Get("Content-Type"))
	}
	e, err := parseExposition(body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return e
}

func (e *exposition) value(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := e.samples[series]
	if !ok {
		t.Fatalf("no series %s", series)
	}
	return v
}

func TestMetricsFollowTheCluster(t *testing.T) {
	k := startConsole(t)
	e := scrape(t, k.url)
	for series, want := range map[string]float64{
		`rampart_dfs_chunkservers{state="up"}`:              3,
		`rampart_dfs_chunkservers{state="down"}`:            0,
		`rampart_dfs_chunks{state="ok"}`:                    3,
		`rampart_dfs_chunks{state="undergoal"}`:             0,
		`rampart_dfs_chunks{state="missing"}`:               0,
		`rampart_dfs_copies{state="valid"}`:                 7,
		`rampart_dfs_copies{state="lost"}`:                  0,
		`rampart_dfs_chunks_by_copies{goal="2",copies="2"}`: 2,
		`rampart_dfs_chunks_by_copies{goal="3",copies="3"}`: 1,
		`rampart_dfs_replication_queue{kind="undergoal"}`:   0,
		`rampart_dfs_meta_sync_info{mode="interval"}`:       1,
		`rampart_dfs_inodes`:                                3,
		`rampart_dfs_replication_limit_per_second`:          64, // 16 per 250ms
	} {
		if got := e.value(t, series); got != want {
			t.Errorf("%s: got %v, want %v", series, got, want)
		}
	}
	info, err := k.cl.Master.Info()
	if err != nil {
		t.Fatal(err)
	}
	if got := e.value(t, "rampart_dfs_space_total_bytes"); got != float64(info.Space.Total) || got == 0 {
		t.Errorf("space total: got %v, want Info's %d (nonzero)", got, info.Space.Total)
	}
	held := 0.0
	for _, cs := range k.cl.Chunkservers {
		if got := e.value(t, `rampart_dfs_chunkserver_up{addr="`+cs.Addr()+`"}`); got != 1 {
			t.Errorf("chunkserver %s up: got %v, want 1", cs.Addr(), got)
		}
		n := e.value(t, `rampart_dfs_chunkserver_chunks{addr="`+cs.Addr()+`"}`)
		if want := float64(len(cs.Store().Chunks())); n != want {
			t.Errorf("chunkserver %s chunks: got %v, want %v (its store)", cs.Addr(), n, want)
		}
		held += n
	}
	if held != 7 {
		t.Errorf("copies over all chunkservers: got %v, want 7", held)
	}

	// The master's request counter, where it has one (Master.Requests).
	if _, ok := any(k.cl.Master).(requestCounter); ok {
		if got := e.value(t, `rampart_dfs_requests_total{type="Create"}`); got < 2 {
			t.Errorf("Create requests: got %v, want at least the 2 the test made", got)
		}
		before := e.samples[`rampart_dfs_requests_total{type="Info"}`]
		if _, err := k.c.Info(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := scrape(t, k.url).value(t, `rampart_dfs_requests_total{type="Info"}`); got != before+1 {
			t.Errorf("Info requests after one more: got %v, want %v", got, before+1)
		}
	} else {
		t.Log("the master does not count requests: rampart_dfs_requests_total not checked")
	}

	// A chunkserver dies: its gauge drops to 0, its copies count as lost,
	// the live space shrinks.
	dead := k.cl.Chunkservers[0]
	lost := e.value(t, `rampart_dfs_chunkserver_chunks{addr="`+dead.Addr()+`"}`)
	if lost == 0 {
		t.Fatal("chunkserver 0 holds no copy; the test would prove nothing")
	}
	dead.Close()
	waitFor(t, func() bool {
		return scrape(t, k.url).samples[`rampart_dfs_chunkserver_up{addr="`+dead.Addr()+`"}`] == 0
	})
	after := scrape(t, k.url)
	for series, want := range map[string]float64{
		`rampart_dfs_chunkservers{state="up"}`:   2,
		`rampart_dfs_chunkservers{state="down"}`: 1,
		`rampart_dfs_copies{state="lost"}`:       lost,
	} {
		if got := after.value(t, series); got != want {
			t.Errorf("after a chunkserver died, %s: got %v, want %v", series, got, want)
		}
	}
	if got := after.value(t, "rampart_dfs_space_total_bytes"); got >= e.value(t, "rampart_dfs_space_total_bytes") {
		t.Errorf("live space after a chunkserver died: got %v, want less than %v", got, e.value(t, "rampart_dfs_space_total_bytes"))
	}
	// The goal-3 chunk cannot get its third copy back with two servers left.
	if got := after.value(t, `rampart_dfs_chunks{state="undergoal"}`); got < 1 {
		t.Errorf(`rampart_dfs_chunks{state="undergoal"}: got %v, want at least 1 (the goal-3 chunk)`, got)
	}
	if got := after.value(t, `rampart_dfs_chunks_by_copies{goal="3",copies="2"}`); got != 1 {
		t.Errorf(`chunks of goal 3 with 2 copies: got %v, want 1`, got)
	}
	// The console counts its own requests.
	if got := after.value(t, `rampart_web_requests_total{route="/metrics",code="200"}`); got < 2 {
		t.Errorf("/metrics requests counted: got %v, want at least 2", got)
	}
}

func TestExpositionEscapes(t *testing.T) {
	var w promWriter
	w.family("x_total", "counter", "help with \\ and\nnewline")
	w.sample("x_total", 1, "addr", "a\"b\\c\nd", "k", "")
	w.sample("x_total", math.Inf(1), "addr", "plain")
	want := "# HELP x_total help with \\\\ and\\nnewline\n# TYPE x_total counter\n" +
		"x_total{addr=\"a\\\"b\\\\c\\nd\",k=\"\"} 1\nx_total{addr=\"plain\"} +Inf\n"
	if got := w.b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if _, err := parseExposition(want); err != nil {
		t.Errorf("the parser refuses a valid exposition: %v", err)
	}
	for _, bad := range []string{
		"x 1\n",                             // no family
		"# HELP x h\n# TYPE x gauge\ny 1\n", // sample of another family
		"# HELP x h\n# TYPE x gauge\nx{a=\"\\q\"} 1\n",             // bad escape
		"# HELP x h\n# TYPE x gauge\nx 1\nx 2\n",                   // repeated series
		"# HELP x h\n# TYPE x gauge\nx{a=\"b} 1\n",                 // unterminated
		"# HELP x h\n# TYPE x gauge\nx one\n",                      // value
		"# HELP x h\n# TYPE x gauge\n# HELP x h\n# TYPE x gauge\n", // family twice
	} {
		if _, err := parseExposition(bad); err == nil {
			t.Errorf("the parser accepts %q", bad)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, "0"}, {811659522048, "811659522048"}, {0.25, "0.25"}, {1.5e15, "1.5e+15"}, {math.NaN(), "NaN"}, {math.Inf(-1), "-Inf"}} {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v): got %q, want %q", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n    uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 30, "5.0 GiB"}, {1 << 60, "1.0 EiB"}} {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d): got %q, want %q", tc.n, got, tc.want)
		}
	}
}
