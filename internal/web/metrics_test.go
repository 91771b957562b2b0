package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/rampart-storage/rampart/internal/dfs/master"
)

// exposition is a scrape parsed by expfmt's text parser.
type exposition struct {
	families map[string]*dto.MetricFamily
	// samples maps a series, written name{label="value",...} with the
	// labels sorted by name, to its value.
	samples map[string]float64
}

// parseExposition parses the text format strictly (expfmt.TextParser) and
// indexes the gauge and counter samples by series.
func parseExposition(t *testing.T, text string) *exposition {
	t.Helper()
	var p expfmt.TextParser
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, text)
	}
	e := &exposition{families: mfs, samples: map[string]float64{}}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var v float64
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			default:
				continue
			}
			e.samples[series(name, m)] = v
		}
	}
	return e
}

func series(name string, m *dto.Metric) string {
	labels := m.GetLabel()
	if len(labels) == 0 {
		return name
	}
	pairs := make([]string, len(labels))
	for i, l := range labels {
		pairs[i] = l.GetName() + `="` + l.GetValue() + `"`
	}
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

func scrape(t *testing.T, url string) *exposition {
	t.Helper()
	code, h, body := get(t, url+"/metrics")
	if code != 200 || h.Get("Content-Type") != string(expfmt.FmtText) {
		t.Fatalf("GET /metrics: got %d %q, want 200 %q; body:\n%s", code, h.Get("Content-Type"), expfmt.FmtText, body)
	}
	return parseExposition(t, body)
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
		`rampart_dfs_chunks_by_copies{copies="2",goal="2"}`: 2,
		`rampart_dfs_chunks_by_copies{copies="3",goal="3"}`: 1,
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
	if got := after.value(t, `rampart_dfs_chunks_by_copies{copies="2",goal="3"}`); got != 1 {
		t.Errorf(`chunks of goal 3 with 2 copies: got %v, want 1`, got)
	}
	// The console counts its own requests.
	if got := after.value(t, `rampart_web_requests_total{code="200",route="/metrics"}`); got < 2 {
		t.Errorf("/metrics requests counted: got %v, want at least 2", got)
	}
	// The Go runtime and process collectors are in the registry.
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if after.families[name] == nil {
			t.Errorf("no %s: the Go or process collector is missing", name)
		}
	}
}

// docMetric is one row of the metrics table of docs/web.md.
type docMetric struct {
	typ    dto.MetricType
	labels string // label names, sorted, comma-separated
}

// docMetrics reads the metrics table of docs/web.md: the rows whose first
// cell is a rampart_ metric name, "(counter)" after it for counters.
func docMetrics(t *testing.T) map[string]docMetric {
	t.Helper()
	doc, err := os.ReadFile("../../docs/web.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(rampart_[a-z_]+)`( \\(counter\\))? \\| ([^|]*)\\|")
	label := regexp.MustCompile("`([a-z_]+)`")
	out := map[string]docMetric{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		d := docMetric{typ: dto.MetricType_GAUGE}
		if m[2] != "" {
			d.typ = dto.MetricType_COUNTER
		}
		var names []string
		for _, l := range label.FindAllStringSubmatch(m[3], -1) {
			names = append(names, l[1])
		}
		sort.Strings(names)
		d.labels = strings.Join(names, ",")
		out[m[1]] = d
	}
	if len(out) < 20 {
		t.Fatalf("docs/web.md: found %d metrics in the table, want the whole table", len(out))
	}
	return out
}

// TestMetricsAreDocumented checks that the rampart_ families of a scrape
// are exactly the ones docs/web.md lists, with its types and label names,
// and that they pass promlint (Prometheus's naming rules).
func TestMetricsAreDocumented(t *testing.T) {
	k := startConsole(t)
	if _, err := k.c.Info(t.Context()); err != nil { // a request the master counts
		t.Fatal(err)
	}
	scrape(t, k.url) // so that rampart_web_requests_total has a sample
	e := scrape(t, k.url)
	doc := docMetrics(t)
	var ours []*dto.MetricFamily
	for name, mf := range e.families {
		if !strings.HasPrefix(name, "rampart_") {
			continue
		}
		ours = append(ours, mf)
		d, ok := doc[name]
		if !ok {
			t.Errorf("%s is not in the table of docs/web.md", name)
			continue
		}
		if mf.GetType() != d.typ {
			t.Errorf("%s: type %v, docs/web.md says %v", name, mf.GetType(), d.typ)
		}
		for _, m := range mf.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
			sort.Strings(names)
			if got := strings.Join(names, ","); got != d.labels {
				t.Errorf("%s: labels %q, docs/web.md says %q", series(name, m), got, d.labels)
			}
		}
	}
	for name := range doc {
		if e.families[name] == nil {
			if _, counts := any(k.cl.Master).(requestCounter); name == "rampart_dfs_requests_total" && !counts {
				continue
			}
			t.Errorf("docs/web.md lists %s, the scrape has no such family", name)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// fakeSource serves a fixed status (or an error) and counts the builds.
type fakeSource struct {
	st     *master.Status
	err    error
	builds atomic.Int32
}

func (f *fakeSource) Info() (*master.Info, error) { return f.st.Info, f.err }

func (f *fakeSource) Status() (*master.Status, error) {
	f.builds.Add(1)
	return f.st, f.err
}

func fakeStatus(addrs ...string) *master.Status {
	st := &master.Status{Time: time.Now(), Started: time.Now(), Info: &master.Info{}, MetaSync: "always"}
	for _, a := range addrs {
		st.Servers = append(st.Servers, master.ServerStatus{Addr: a, Live: true, LastHeartbeat: time.Now()})
	}
	return st
}

func serve(t *testing.T, src Source, maxAge time.Duration) http.Handler {
	t.Helper()
	s, err := New(Config{Source: src, Log: quiet(), MaxAge: maxAge})
	if err != nil {
		t.Fatal(err)
	}
	return s.Handler()
}

func scrapeHandler(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Code, rec.Body.String()
}

// A chunkserver address is what the chunkserver registered with: quotes,
// backslashes and newlines survive the exposition, and bytes that are not
// UTF-8 (which Prometheus refuses in a label value) become U+FFFD instead
// of failing the scrape.
func TestMetricsLabelValuesSurvive(t *testing.T) {
	addr := "a\"b\\c\nd\xff:9422"
	code, body := scrapeHandler(t, serve(t, &fakeSource{st: fakeStatus(addr, "10.0.0.2:9422")}, -1))
	if code != http.StatusOK {
		t.Fatalf("GET /metrics with an odd chunkserver address: got %d, want 200; body:\n%s", code, body)
	}
	e := parseExposition(t, body)
	var got []string
	for _, m := range e.families["rampart_dfs_chunkserver_up"].GetMetric() {
		got = append(got, m.GetLabel()[0].GetValue())
	}
	want := []string{"10.0.0.2:9422", "a\"b\\c\nd\uFFFD:9422"}
	if sort.Strings(got); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("rampart_dfs_chunkserver_up addr labels: got %q, want %q", got, want)
	}
}

func TestMetricsWithoutStatusFail(t *testing.T) {
	code, body := scrapeHandler(t, serve(t, &fakeSource{st: fakeStatus(), err: errors.New("master stopped")}, -1))
	if code != http.StatusInternalServerError || !strings.Contains(body, "master stopped") {
		t.Errorf("GET /metrics without a status: got %d %q, want 500 naming the error", code, body)
	}
}

// The pages and /metrics share one status while it is younger than MaxAge.
func TestMetricsShareTheStatus(t *testing.T) {
	src := &fakeSource{st: fakeStatus("10.0.0.1:9422")}
	h := serve(t, src, time.Hour)
	for _, path := range []string{"/metrics", "/", "/chunkservers", "/metrics", "/api/status"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: got %d, want 200", path, rec.Code)
		}
	}
	if got := src.builds.Load(); got != 1 {
		t.Errorf("status builds for 5 requests with MaxAge 1h: got %d, want 1", got)
	}
	src2 := &fakeSource{st: fakeStatus("10.0.0.1:9422")}
	h2 := serve(t, src2, -1)
	scrapeHandler(t, h2)
	scrapeHandler(t, h2)
	if got := src2.builds.Load(); got != 2 {
		t.Errorf("status builds for 2 scrapes with MaxAge -1: got %d, want 2", got)
	}
}
