package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/master"
)

//go:embed templates/*.html
var templateFS embed.FS

// pageNames are the console's pages; each is templates/NAME.html inside
// templates/layout.html.
var pageNames = []string{"overview", "chunkservers", "chunks", "sessions", "notfound"}

type pages struct {
	t map[string]*template.Template
}

func parsePages() (*pages, error) {
	funcs := template.FuncMap{
		"size": humanSize,
		"pct":  pct,
		"used": func(total, free uint64) uint64 { return total - min(free, total) },
		"ago":  ago,
		"dur":  dur,
		"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	}
	p := &pages{t: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: page template %s: %w", name, err)
		}
		p.t[name] = t
	}
	return p, nil
}

// humanSize formats a byte count in binary units with one decimal:
// 738.2 GiB.
func humanSize(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(1024), 0
	for m := n / 1024; m >= 1024 && exp < 5; m /= 1024 {
		div *= 1024
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// dur rounds a duration for display: to the millisecond, or to the
// microsecond below one millisecond.
func dur(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// pct returns part as a whole percentage of total (0 when total is 0).
func pct(part, total uint64) int {
	if total == 0 {
		return 0
	}
	return int(float64(part) * 100 / float64(total))
}

// ago says how long before now t was, to the tenth of a second.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "none since dropped"
	}
	return now.Sub(t).Round(100*time.Millisecond).String() + " ago"
}

// refreshChoices are the auto-refresh periods the pages offer (seconds; 0 off).
var refreshChoices = []int{0, 5, 10, 30}

// pageData is what every page template gets.
type pageData struct {
	Page    string
	Title   string
	Path    string
	Refresh int   // seconds; 0: no auto-refresh
	Choices []int // refreshChoices
	S       *master.Status
	Health  health
	Up      int
	Down    int
	Matrix  matrix
	// Requests are the client requests the master ran, by type (nil if
	// the master does not count them).
	Requests []requestCount
	Err      string
}

// page serves one HTML page rendered from the current status.
func (s *Server) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d := pageData{Page: name, Title: titles[name], Path: r.URL.Path, Choices: refreshChoices}
		if v, err := strconv.Atoi(r.URL.Query().Get("refresh")); err == nil {
			for _, c := range refreshChoices {
				if v == c {
					d.Refresh = v
				}
			}
		}
		code := http.StatusOK
		st, err := s.statusNow()
		if err != nil {
			s.log.Warn("web page without a master status", "page", name, "err", err)
			d.Err, code = err.Error(), http.StatusInternalServerError
		} else {
			d.S = st
			for _, cs := range st.Servers {
				if cs.Live {
					d.Up++
				} else {
					d.Down++
				}
			}
			d.Health = healthOf(st, d.Up, d.Down)
			d.Matrix = matrixOf(st.Copies)
			d.Requests = clientRequests(s.cfg.Source)
		}
		s.render(w, name, code, &d)
	}
}

var titles = map[string]string{
	"overview": "Overview", "chunkservers": "Chunkservers", "chunks": "Chunk matrix",
	"sessions": "Sessions", "notfound": "Not found",
}

func (s *Server) render(w http.ResponseWriter, name string, code int, d *pageData) {
	var b bytes.Buffer
	if err := s.pages.t[name].Execute(&b, d); err != nil {
		s.log.Error("web page rendering failed", "page", name, "err", err)
		http.Error(w, "page rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.render(w, "notfound", http.StatusNotFound, &pageData{Page: "notfound", Title: titles["notfound"], Path: r.URL.Path, Choices: refreshChoices})
}

// health is the one-line verdict at the top of the overview.
type health struct {
	Class string // ok, warn, crit: the CSS class
	Text  string
}

func healthOf(st *master.Status, up, down int) health {
	ch := st.Info.Chunks
	switch {
	case up == 0 && down == 0:
		return health{"warn", "no chunkserver has registered"}
	case ch.Missing > 0:
		return health{"crit", fmt.Sprintf("%d chunks have no valid copy: their data cannot be read", ch.Missing)}
	case up == 0:
		return health{"crit", "every chunkserver is down"}
	case ch.Undergoal > 0:
		// Chunks whose goal exceeds the chunkservers up cannot get there.
		stuck := 0
		for _, c := range st.Copies {
			if c.Copies > 0 && c.Copies < c.Goal && c.Goal > up {
				stuck += c.Chunks
			}
		}
		if stuck > 0 {
			return health{"warn", fmt.Sprintf("degraded: %d chunks below their goal; %d of them need more chunkservers than the %d up", ch.Undergoal, stuck, up)}
		}
		return health{"warn", fmt.Sprintf("degraded: %d chunks below their goal, being re-replicated", ch.Undergoal)}
	case down > 0:
		return health{"warn", fmt.Sprintf("%d chunkservers down; every chunk still has its goal", down)}
	}
	return health{"ok", "healthy: every chunk has its goal"}
}

// matrix is the chunk matrix: one row per goal, one column per number of
// valid copies, as MooseFS's CGI shows it.
type matrix struct {
	Copies []int // column headings: 0..max
	Rows   []matrixRow
	Totals []int // per column
	Total  int
}

type matrixRow struct {
	Goal  int
	Cells []matrixCell
	Total int
}

type matrixCell struct {
	Chunks int
	Class  string // missing, under, ok, over
}

func matrixOf(cc []master.CopyCount) matrix {
	var m matrix
	maxCol := 0
	var goals []int
	byGoal := map[int]map[int]int{}
	for _, c := range cc {
		maxCol = max(maxCol, c.Goal, c.Copies)
		if byGoal[c.Goal] == nil {
			byGoal[c.Goal] = map[int]int{}
			goals = append(goals, c.Goal) // cc is sorted by goal
		}
		byGoal[c.Goal][c.Copies] += c.Chunks
	}
	for i := 0; i <= maxCol; i++ {
		m.Copies = append(m.Copies, i)
	}
	m.Totals = make([]int, maxCol+1)
	for _, g := range goals {
		row := matrixRow{Goal: g}
		for n := 0; n <= maxCol; n++ {
			cell := matrixCell{Chunks: byGoal[g][n], Class: "ok"}
			switch {
			case n == 0:
				cell.Class = "missing"
			case n < g:
				cell.Class = "under"
			case n > g:
				cell.Class = "over"
			}
			row.Cells = append(row.Cells, cell)
			row.Total += cell.Chunks
			m.Totals[n] += cell.Chunks
		}
		m.Total += row.Total
		m.Rows = append(m.Rows, row)
	}
	return m
}

// apiInfo answers the master's Info as `rampart info --json` prints it.
func (s *Server) apiInfo(w http.ResponseWriter, r *http.Request) {
	info, err := s.cfg.Source.Info()
	if err != nil {
		http.Error(w, "master info: "+err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, info)
}

// apiStatus answers the status the pages are rendered from.
func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.statusNow()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, st)
}

// writeJSON writes v indented by two spaces with a final newline, the
// encoding of every --json flag of the CLI.
func writeJSON(w http.ResponseWriter, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, "json: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}
