package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/local"
	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func quiet() *slog.Logger {
	if os.Getenv("DFS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// console is a local cluster (master and three chunkservers in process),
// a client, and the console's handler behind an httptest server.
type console struct {
	cl  *local.Cluster
	c   *client.Client
	srv *Server
	url string
}

// startConsole starts the cluster and writes files: goal2 (two chunks,
// goal 2) and goal3 (one chunk, goal 3).
func startConsole(t *testing.T) *console {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	cl, err := local.Start(ctx, local.Config{Dir: t.TempDir(), Heartbeat: 100 * time.Millisecond,
		HeartbeatTimeout: time.Second, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c, err := client.Dial(ctx, cl.Master.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	data := bytes.Repeat([]byte("rampart "), 1<<17) // 1 MiB
	for _, f := range []struct {
		name   string
		goal   int
		chunks int
	}{{"goal2", 2, 2}, {"goal3", 3, 1}} {
		a, err := c.Create(ctx, meta.RootIno, f.name, meta.Node{Mode: syscall.S_IFREG | 0o644})
		if err != nil {
			t.Fatal(err)
		}
		if f.goal != 2 {
			if _, err := c.Setattr(ctx, a.Ino, client.SetAttr{Valid: proto.SetGoal, Mode: uint32(f.goal)}); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < f.chunks; i++ {
			if err := c.WriteAt(ctx, a.Ino, data, int64(i)*proto.ChunkSize); err != nil {
				t.Fatalf("write %s chunk %d: %v", f.name, i, err)
			}
		}
	}
	s, err := New(Config{Source: cl.Master, Log: quiet(), MaxAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &console{cl: cl, c: c, srv: s, url: hs.URL}
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// getPage fetches a page that must answer 200 with HTML.
func getPage(t *testing.T, url string) string {
	t.Helper()
	code, h, body := get(t, url)
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET %s: got %d %q, want 200 text/html; body:\n%s", url, code, h.Get("Content-Type"), body)
	}
	return body
}

// row returns the table row of the page whose first cell is first.
func row(t *testing.T, page, first string) string {
	t.Helper()
	re := regexp.MustCompile(`(?s)<tr>\s*<td class="l">` + regexp.QuoteMeta(first) + `</td>.*?</tr>`)
	r := re.FindString(page)
	if r == "" {
		t.Fatalf("no table row for %s in:\n%s", first, page)
	}
	return r
}

// cells returns the texts of a row's td cells, tags removed.
func cells(r string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(r, -1) {
		out = append(out, strings.TrimSpace(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(m[1], "")))
	}
	return out
}

func TestPagesShowTheCluster(t *testing.T) {
	k := startConsole(t)
	ctx := t.Context()

	overview := getPage(t, k.url+"/")
	for _, want := range []string{"healthy: every chunk has its goal", `<dt>up</dt><dd class="up">3</dd>`,
		"<dt>total</dt><dd>3</dd>", "<dt>valid</dt><dd>7</dd>", "<dt>sync mode</dt><dd>interval</dd>"} {
		if !strings.Contains(overview, want) {
			t.Errorf("overview: no %q in:\n%s", want, overview)
		}
	}

	// Each chunkserver's row shows the copies it really holds.
	servers := getPage(t, k.url+"/chunkservers")
	for _, cs := range k.cl.Chunkservers {
		c := cells(row(t, servers, cs.Addr()))
		if len(c) != 10 {
			t.Fatalf("row of %s: got %d cells %q, want 10", cs.Addr(), len(c), c)
		}
		if got, want := c[3], fmt.Sprint(len(cs.Store().Chunks())); c[1] != "up" || got != want {
			t.Errorf("row of %s: got state %q, chunks %s; want up, %s (the chunkserver's store)", cs.Addr(), c[1], got, want)
		}
		if !strings.HasSuffix(c[2], " ago") {
			t.Errorf("row of %s: last heartbeat %q, want a time ago", cs.Addr(), c[2])
		}
	}

	// The matrix: 2 chunks of goal 2 with 2 copies, 1 of goal 3 with 3.
	chunks := getPage(t, k.url+"/chunks")
	for goal, want := range map[string][]string{"2": {"-", "-", "2", "-", "2"}, "3": {"-", "-", "-", "1", "1"}} {
		re := regexp.MustCompile(`(?s)<tr><th class="l">` + goal + `</th>(.*?)</tr>`)
		m := re.FindStringSubmatch(chunks)
		if m == nil {
			t.Fatalf("chunk matrix: no row for goal %s in:\n%s", goal, chunks)
		}
		if got := cells(m[1]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("chunk matrix row goal %s: got %q, want %q", goal, got, want)
		}
	}

	// A client holding a file open with a lock is a session.
	if !strings.Contains(getPage(t, k.url+"/sessions"), "No client session is open.") {
		t.Error("sessions page lists a session before any file was opened")
	}
	a, err := k.c.Lookup(ctx, meta.RootIno, "goal2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.c.Open(ctx, a.Ino, 0); err != nil {
		t.Fatal(err)
	}
	if err := k.c.Setlk(ctx, &proto.Lock{Ino: a.Ino, Owner: 7, End: 1<<63 - 1, Type: proto.LockWrite}, false); err != nil {
		t.Fatal(err)
	}
	sessions := getPage(t, k.url+"/sessions")
	m := regexp.MustCompile(`(?s)<tr><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>`).FindAllStringSubmatch(sessions, -1)
	if len(m) != 1 || m[0][2] != "1" || m[0][3] != "1" || m[0][4] != "1" {
		t.Errorf("sessions: got rows %q, want one session with 1 open inode, 1 handle, 1 lock; page:\n%s", m, sessions)
	}

	// Lose a chunkserver: its row says DOWN and the banner is no longer healthy.
	dead := k.cl.Chunkservers[0]
	dead.Close()
	waitFor(t, func() bool { return strings.Contains(getPage(t, k.url+"/chunkservers"), "DOWN") })
	if c := cells(row(t, getPage(t, k.url+"/chunkservers"), dead.Addr())); c[1] != "DOWN" {
		t.Errorf("row of the closed chunkserver: state %q, want DOWN", c[1])
	}
	// The goal-3 chunk cannot get back to 3 copies on the 2 servers left.
	if overview := getPage(t, k.url+"/"); strings.Contains(overview, "healthy") || !strings.Contains(overview, `<dt>down</dt><dd class="down">1</dd>`) ||
		!strings.Contains(overview, "of them need more chunkservers than the 2 up") {
		t.Errorf("overview after a chunkserver died: want 1 down, no 'healthy', and the goal-3 chunk stuck:\n%s", overview)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRefreshIsOptIn(t *testing.T) {
	k := startConsole(t)
	if p := getPage(t, k.url+"/chunks"); strings.Contains(p, `http-equiv="refresh"`) {
		t.Error("a page refreshes without ?refresh")
	}
	if p := getPage(t, k.url+"/chunks?refresh=5"); !strings.Contains(p, `<meta http-equiv="refresh" content="5">`) {
		t.Errorf("?refresh=5: no refresh meta in:\n%s", p)
	}
	if p := getPage(t, k.url+"/chunks?refresh=1"); strings.Contains(p, `http-equiv="refresh"`) {
		t.Error("?refresh=1 (not offered) refreshes anyway")
	}
}

func TestReadOnlyAndNotFound(t *testing.T) {
	k := startConsole(t)
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope", 404},
		{"GET", "/chunkservers/x", 404},
		{"GET", "/api/", 404},
		{"HEAD", "/", 200},
		{"POST", "/", 405},
		{"PUT", "/metrics", 405},
		{"DELETE", "/api/info", 405},
		{"POST", "/nope", 405},
	} {
		req, _ := http.NewRequest(tc.method, k.url+tc.path, strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: got %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
		if tc.want == 404 && !strings.Contains(string(body), "Not found") {
			t.Errorf("%s %s: 404 without the not-found page:\n%s", tc.method, tc.path, body)
		}
		if tc.want == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q, want GET, HEAD", tc.method, tc.path, resp.Header.Get("Allow"))
		}
	}
	// The not-found page escapes the path it names.
	if _, _, body := get(t, k.url+"/%3Cscript%3E"); strings.Contains(body, "<script>") {
		t.Errorf("the 404 page echoes markup unescaped:\n%s", body)
	}
}

func TestAPIInfoIsRampartInfoJSON(t *testing.T) {
	k := startConsole(t)
	// What `rampart info --json` prints: the client's Info, indented.
	indented := func(info *proto.Info) string {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		if err := enc.Encode(info); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	// Free space is the free space of the filesystem under the
	// chunkservers, which other writers on the machine change between two
	// calls: the contents are compared with it set to 0.
	withoutFree := func(info *proto.Info) string {
		c := *info
		c.Servers = append([]proto.ServerInfo(nil), info.Servers...)
		for i := range c.Servers {
			c.Servers[i].Free = 0
		}
		c.Space.Free = 0
		return indented(&c)
	}
	info, err := k.c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	code, h, body := get(t, k.url+"/api/info")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/info: %d %q", code, h.Get("Content-Type"))
	}
	var got proto.Info
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if body != indented(&got) {
		t.Errorf("/api/info is not encoded as rampart info --json encodes:\n%s\nwant:\n%s", body, indented(&got))
	}
	if withoutFree(&got) != withoutFree(info) {
		t.Errorf("/api/info (free space zeroed):\n%s\nwant the client's Info:\n%s", withoutFree(&got), withoutFree(info))
	}
	direct, err := k.cl.Master.Info()
	if err != nil {
		t.Fatal(err)
	}
	if withoutFree(&got) != withoutFree(direct) || got.Chunks.Total != 3 || got.Space.Free == 0 {
		t.Errorf("/api/info: got %+v, want Master.Info() %+v with 3 chunks and some free space", got, *direct)
	}
}

func TestStatusIsReusedForMaxAge(t *testing.T) {
	k := startConsole(t)
	s, err := New(Config{Source: k.cl.Master, Log: quiet(), MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	when := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/status", nil))
		var st struct{ Time string }
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		return st.Time
	}
	if a, b := when(), when(); a != b {
		t.Errorf("MaxAge 1h: status taken at %s then %s, want one status reused", a, b)
	}
	// k.srv has MaxAge -1: every request builds its own.
	rec1, rec2 := httptest.NewRecorder(), httptest.NewRecorder()
	k.srv.Handler().ServeHTTP(rec1, httptest.NewRequest("GET", "/api/status", nil))
	time.Sleep(time.Millisecond)
	k.srv.Handler().ServeHTTP(rec2, httptest.NewRequest("GET", "/api/status", nil))
	if rec1.Body.String() == rec2.Body.String() {
		t.Error("MaxAge -1: two requests got the same status")
	}
}

func TestStartServeClose(t *testing.T) {
	k := startConsole(t)
	s, err := New(Config{Listen: "127.0.0.1:0", Source: k.cl.Master, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-s.Ready()
	if !strings.Contains(getPage(t, "http://"+s.Addr()+"/"), "rampart DFS") {
		t.Error("the started console does not serve the overview")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + s.Addr() + "/"); err == nil {
		t.Error("the console still answers after Close")
	}
	if _, err := New(Config{Log: quiet()}); err == nil {
		t.Error("New without a Source: no error")
	}
}

func TestHumanSize(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 30, "5.0 GiB"}, {1 << 60, "1.0 EiB"}} {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d): got %q, want %q", tc.n, got, tc.want)
		}
	}
}
