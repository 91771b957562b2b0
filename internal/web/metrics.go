package web

import (
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// The metrics are served by client_golang: each Server has its own
// registry (never the global one) holding statusCollector, the console's
// request counter, and the Go runtime and process collectors. docs/web.md
// lists the metrics.

func gaugeDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The descriptions of the metrics statusCollector builds from a status.
var (
	descStartTime = gaugeDesc("rampart_dfs_master_start_time_seconds",
		"When the master started serving, in seconds since the Unix epoch.")
	descScanTime = gaugeDesc("rampart_dfs_status_scan_seconds",
		"How long building this status (scanning the chunk table) took.")
	descChunkservers = gaugeDesc("rampart_dfs_chunkservers",
		"Registered chunkservers by state (up: reported within the heartbeat timeout).", "state")

	descServerUp = gaugeDesc("rampart_dfs_chunkserver_up",
		"1 if the chunkserver reported within the heartbeat timeout, else 0.", "addr")
	descServerHeartbeat = gaugeDesc("rampart_dfs_chunkserver_last_heartbeat_timestamp_seconds",
		"When the chunkserver last reported, in seconds since the Unix epoch (0: counted lost since).", "addr")
	descServerTotal = gaugeDesc("rampart_dfs_chunkserver_space_total_bytes",
		"Capacity of the chunkserver's data folders, as last reported.", "addr")
	descServerFree = gaugeDesc("rampart_dfs_chunkserver_space_free_bytes",
		"Free space of the chunkserver's data folders, as last reported (less chunks placed since).", "addr")
	descServerChunks = gaugeDesc("rampart_dfs_chunkserver_chunks",
		"Chunk copies the chunk map places on the chunkserver (current versions).", "addr")
	descServerBad = gaugeDesc("rampart_dfs_chunkserver_bad_copies",
		"Copies on the chunkserver dropped after a CRC error in the last minute.", "addr")
	descServerDeletes = gaugeDesc("rampart_dfs_chunkserver_pending_deletes",
		"Copies the chunkserver will be told to delete with its next heartbeat.", "addr")

	descSpaceTotal = gaugeDesc("rampart_dfs_space_total_bytes", "Capacity of the chunkservers that are up.")
	descSpaceFree  = gaugeDesc("rampart_dfs_space_free_bytes", "Free space of the chunkservers that are up.")
	descChunks     = gaugeDesc("rampart_dfs_chunks",
		"Chunks by replication state: ok (valid copies = goal), undergoal, overgoal, missing (no valid copy).", "state")
	descCopies = gaugeDesc("rampart_dfs_copies",
		"Chunk copies by state: valid, lost (on a down chunkserver), stale (queued for deletion), bad (dropped after a CRC error, last minute).", "state")
	descMatrix = gaugeDesc("rampart_dfs_chunks_by_copies",
		"The chunk matrix: chunks by goal and number of valid copies (nonzero cells only).", "goal", "copies")

	descReplQueue = gaugeDesc("rampart_dfs_replication_queue",
		"Chunks the replication loop would act on now: undergoal (a copy to add) and overgoal (a copy to drop); chunks being written wait.", "kind")
	descReplInProgress = gaugeDesc("rampart_dfs_replications_in_progress", "Chunk copies being made now.")
	descReplLimit      = gaugeDesc("rampart_dfs_replication_limit_per_second",
		"Most copies the replication loop adds or drops per second.")

	descInodes   = gaugeDesc("rampart_dfs_inodes", "Live inodes in the namespace.")
	descMetaSync = gaugeDesc("rampart_dfs_meta_sync_info",
		"The metadata sync mode (always: fsync before each reply; interval: fsync in the background), as a label; the value is 1.", "mode")
	descMetaInterval = gaugeDesc("rampart_dfs_meta_sync_interval_seconds",
		"Period of the background metadata fsync (0 in always mode).")
	descSessions = gaugeDesc("rampart_dfs_sessions", "Client sessions (connections that opened a file or took a lock).")
	descHandles  = gaugeDesc("rampart_dfs_open_handles", "Open file handles of all client sessions.")
	descLocks    = gaugeDesc("rampart_dfs_locks", "File locks (fcntl and flock) held by all client sessions.")

	descRequests = prometheus.NewDesc("rampart_dfs_requests_total",
		"Client requests the master ran, by message type (a retried request answered from its record counts once).",
		[]string{"type"}, nil)
)

// statusCollector is a prometheus.Collector over the master's status: each
// scrape takes the status the pages use (Server.statusNow, shared by
// concurrent requests and reused for MaxAge) and turns it into constant
// metrics, plus the master's request counts if it keeps them.
type statusCollector struct {
	s *Server
}

var _ prometheus.Collector = statusCollector{}

// Describe sends every description Collect uses.
func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descStartTime, descScanTime, descChunkservers,
		descServerUp, descServerHeartbeat, descServerTotal, descServerFree,
		descServerChunks, descServerBad, descServerDeletes,
		descSpaceTotal, descSpaceFree, descChunks, descCopies, descMatrix,
		descReplQueue, descReplInProgress, descReplLimit,
		descInodes, descMetaSync, descMetaInterval, descSessions, descHandles, descLocks,
	} {
		ch <- d
	}
	if _, ok := c.s.cfg.Source.(requestCounter); ok {
		ch <- descRequests
	}
}

// Collect sends the metrics of the current status. Without a status it
// sends an invalid metric carrying the error, which fails the scrape (the
// handler answers 500 and logs it).
func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.s.statusNow()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descScanTime, err)
		return
	}
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, t, v, labels...)
		if err != nil {
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) { send(d, prometheus.GaugeValue, v, labels...) }

	info := st.Info
	gauge(descStartTime, float64(st.Started.UnixNano())/1e9)
	gauge(descScanTime, st.ScanTime.Seconds())

	up, down := 0, 0
	for i := range st.Servers {
		cs := &st.Servers[i]
		if cs.Live {
			up++
		} else {
			down++
		}
		// The address is what the chunkserver registered with; label
		// values must be UTF-8.
		addr := strings.ToValidUTF8(cs.Addr, "\uFFFD")
		gauge(descServerUp, b2f(cs.Live), addr)
		heartbeat := 0.0
		if !cs.LastHeartbeat.IsZero() {
			heartbeat = float64(cs.LastHeartbeat.UnixNano()) / 1e9
		}
		gauge(descServerHeartbeat, heartbeat, addr)
		gauge(descServerTotal, float64(cs.Total), addr)
		gauge(descServerFree, float64(cs.Free), addr)
		gauge(descServerChunks, float64(cs.Chunks), addr)
		gauge(descServerBad, float64(cs.BadCopies), addr)
		gauge(descServerDeletes, float64(cs.PendingDeletes), addr)
	}
	gauge(descChunkservers, float64(up), "up")
	gauge(descChunkservers, float64(down), "down")

	gauge(descSpaceTotal, float64(info.Space.Total))
	gauge(descSpaceFree, float64(info.Space.Free))
	gauge(descChunks, float64(info.Chunks.OK), "ok")
	gauge(descChunks, float64(info.Chunks.Undergoal), "undergoal")
	gauge(descChunks, float64(info.Chunks.Overgoal), "overgoal")
	gauge(descChunks, float64(info.Chunks.Missing), "missing")
	states := info.Chunks.States
	gauge(descCopies, float64(states.Valid), "valid")
	gauge(descCopies, float64(states.Lost), "lost")
	gauge(descCopies, float64(states.Stale), "stale")
	gauge(descCopies, float64(states.Bad), "bad")
	for _, cell := range st.Copies {
		gauge(descMatrix, float64(cell.Chunks), strconv.Itoa(cell.Goal), strconv.Itoa(cell.Copies))
	}

	r := st.Replication
	gauge(descReplQueue, float64(r.Undergoal), "undergoal")
	gauge(descReplQueue, float64(r.Overgoal), "overgoal")
	gauge(descReplInProgress, float64(r.InProgress))
	limit := 0.0
	if r.Interval > 0 {
		limit = float64(r.PerTick) / r.Interval.Seconds()
	}
	gauge(descReplLimit, limit)

	gauge(descInodes, float64(st.Inodes))
	gauge(descMetaSync, 1, st.MetaSync)
	gauge(descMetaInterval, st.MetaSyncInterval.Seconds())
	handles, locks := 0, 0
	for _, s := range st.Sessions {
		handles += s.Handles
		locks += s.Locks
	}
	gauge(descSessions, float64(len(st.Sessions)))
	gauge(descHandles, float64(handles))
	gauge(descLocks, float64(locks))

	for _, rc := range clientRequests(c.s.cfg.Source) {
		send(descRequests, prometheus.CounterValue, float64(rc.Count), rc.Type)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// requestCounter is an optional capability of a Source: how many client
// requests of each type the master has run (Master.Requests).
type requestCounter interface {
	Requests(t proto.MsgType) uint64
}

// requestCount is the count of one client request type.
type requestCount struct {
	Type  string
	Count uint64
}

// clientRequests returns the nonzero request counts of src by type (client
// messages are 0x0300-0x03ff), or nil if src does not count requests.
func clientRequests(src Source) []requestCount {
	rc, ok := src.(requestCounter)
	if !ok {
		return nil
	}
	var out []requestCount
	for t := proto.MsgType(0x0300); t < 0x0400; t++ {
		if n := rc.Requests(t); n > 0 {
			out = append(out, requestCount{t.String(), n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// newMetrics builds a Server's registry: the status collector, the Go
// runtime and process collectors, and requests, the console's own request
// counter, which the caller increments.
func newMetrics(s *Server) (reg *prometheus.Registry, requests *prometheus.CounterVec, err error) {
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_web_requests_total",
		Help: "HTTP requests the web console answered, by route and status code.",
	}, []string{"route", "code"})
	reg = prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		statusCollector{s},
		requests,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, nil, fmt.Errorf("web: register metrics: %w", err)
		}
	}
	return reg, requests, nil
}

// metricsHandler serves the registry's metrics in the format the scraper
// asks for (the text format 0.0.4 by default). A scrape that fails (no
// master status) gets 500 and is logged; the failures are counted in
// promhttp_metric_handler_errors_total.
func metricsHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{log},
		ErrorHandling: promhttp.HTTPErrorOnError,
		Registry:      reg,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// promLogger is promhttp's error log, written to slog: promhttp passes a
// description and the error.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	msg := "metrics"
	var attrs []any
	for _, x := range v {
		switch x := x.(type) {
		case string:
			msg = "metrics: " + strings.TrimSuffix(x, ":")
		case error:
			attrs = append(attrs, "err", x)
		default:
			attrs = append(attrs, "detail", x)
		}
	}
	l.log.Warn(msg, attrs...)
}
