// Package web is the DFS master's web console and its Prometheus endpoint,
// served on port 9425 as MooseFS's CGI server is.
//
// Every page is rendered on the server from one master.Status, with
// html/template and no script: it works in any browser, in a text browser
// and through curl. The same status feeds /metrics (client_golang: a
// collector over the status, in a registry of the Server's own; metrics.go)
// and /api/status; /api/info is the master's Info, the JSON `rampart info
// --json` prints. The server is read-only: it answers GET and HEAD and
// nothing else, and no request changes the cluster.
//
// Building a status scans the chunk table, so concurrent requests share one
// build and a status younger than Config.MaxAge is reused: refreshing pages
// or scraping often costs at most one scan per MaxAge.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-storage/rampart/internal/dfs/master"
)

// DefaultPort is the console's port, MooseFS's mfscgiserv port.
const DefaultPort = "9425"

// DefaultListen is the console's default listen address.
const DefaultListen = ":" + DefaultPort

// DefaultMaxAge is how long a status is reused by later requests.
const DefaultMaxAge = time.Second

// Source is what the console reads: *master.Master.
type Source interface {
	Info() (*master.Info, error)
	Status() (*master.Status, error)
}

var _ Source = (*master.Master)(nil)

// Config configures a Server.
type Config struct {
	Listen string // DefaultListen if empty
	Source Source // required
	Log    *slog.Logger
	// MaxAge is how long a built status is reused (DefaultMaxAge if zero;
	// negative: every request builds its own).
	MaxAge time.Duration
}

// Server is an embeddable web console: New, Start, Ready, Close; or mount
// Handler in another server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	pages *pages
	ready chan struct{}
	ln    net.Listener
	srv   *http.Server
	ctx   context.Context // Start's

	statusMu sync.Mutex // one status build at a time; later callers reuse it
	status   *master.Status
	builtAt  time.Time

	metrics  http.Handler           // /metrics, over the Server's own registry
	requests *prometheus.CounterVec // the console's requests by route and code
}

// New checks cfg and parses the page templates.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errors.New("web: Config.Source is nil")
	}
	if cfg.Log == nil {
		return nil, errors.New("web: Config.Log is nil")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, pages: p, ready: make(chan struct{})}
	reg, requests, err := newMetrics(s)
	if err != nil {
		return nil, err
	}
	s.metrics, s.requests = metricsHandler(reg, s.log), requests
	return s, nil
}

// Start listens on cfg.Listen and serves until ctx is cancelled or Close.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("web listen %s: %w", s.cfg.Listen, err)
	}
	s.ln, s.ctx = ln, ctx
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("web console stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		s.srv.Close()
	}()
	close(s.ready)
	s.log.Info("web console listening", "addr", ln.Addr().String())
	return nil
}

// Ready is closed once the console accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the listening address (after Start).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving: requests in flight get up to 2 seconds to finish.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}

// Handler returns the console's routes: the pages, /metrics, /api/info and
// /api/status. Methods other than GET and HEAD get 405, unknown paths 404.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page("overview"))
	mux.HandleFunc("GET /chunkservers", s.page("chunkservers"))
	mux.HandleFunc("GET /chunks", s.page("chunks"))
	mux.HandleFunc("GET /sessions", s.page("sessions"))
	mux.Handle("GET /metrics", s.metrics)
	mux.HandleFunc("GET /api/info", s.apiInfo)
	mux.HandleFunc("GET /api/status", s.apiStatus)
	mux.HandleFunc("/", s.notFound)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		_, pattern := mux.Handler(r)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(rec, "method not allowed: the console is read-only", http.StatusMethodNotAllowed)
		} else {
			mux.ServeHTTP(rec, r)
		}
		s.requests.WithLabelValues(route(pattern), strconv.Itoa(rec.code)).Inc()
	})
}

// route names a request's route for the request counter: its pattern
// without the method, or "other" for the catch-all.
func route(pattern string) string {
	switch pattern {
	case "", "/":
		return "other"
	case "GET /{$}":
		return "/"
	}
	if len(pattern) > 4 && pattern[:4] == "GET " {
		return pattern[4:]
	}
	return "other"
}

type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

// statusNow returns a status no older than MaxAge, building one if needed.
func (s *Server) statusNow() (*master.Status, error) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if s.status != nil && s.cfg.MaxAge > 0 && time.Since(s.builtAt) < s.cfg.MaxAge {
		return s.status, nil
	}
	st, err := s.cfg.Source.Status()
	if err != nil {
		return nil, fmt.Errorf("web: master status: %w", err)
	}
	s.status, s.builtAt = st, time.Now()
	return st, nil
}
