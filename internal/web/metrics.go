package web

import (
	"bytes"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/rampart-storage/rampart/internal/dfs/master"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// The metrics are written by hand in the Prometheus text exposition format
// (version 0.0.4): for each family a HELP line, a TYPE line, then its
// samples, families never interleaved. docs/web.md lists them.

// promWriter writes metric families to a buffer.
type promWriter struct {
	b bytes.Buffer
}

// family starts a metric family: typ is gauge or counter.
func (w *promWriter) family(name, typ, help string) {
	w.b.WriteString("# HELP " + name + " " + escapeHelp(help) + "\n")
	w.b.WriteString("# TYPE " + name + " " + typ + "\n")
}

// sample writes one sample; labels are name, value pairs.
func (w *promWriter) sample(name string, v float64, labels ...string) {
	w.b.WriteString(name)
	if len(labels) > 0 {
		w.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.b.WriteString(labels[i] + `="` + escapeLabel(labels[i+1]) + `"`)
		}
		w.b.WriteByte('}')
	}
	w.b.WriteByte(' ')
	w.b.WriteString(formatValue(v))
	w.b.WriteByte('\n')
}

// gauge writes a family with one unlabelled sample.
func (w *promWriter) gauge(name, help string, v float64) {
	w.family(name, "gauge", help)
	w.sample(name, v)
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', -1, 64) // counts and bytes as integers
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// writeStatus writes the cluster's metrics from one status.
func writeStatus(w *promWriter, st *master.Status) {
	info := st.Info
	w.gauge("rampart_dfs_master_start_time_seconds", "When the master started serving, in seconds since the Unix epoch.",
		float64(st.Started.UnixNano())/1e9)
	w.gauge("rampart_dfs_status_scan_seconds", "How long building this status (scanning the chunk table) took.", st.ScanTime.Seconds())

	up, down := 0, 0
	for _, cs := range st.Servers {
		if cs.Live {
			up++
		} else {
			down++
		}
	}
	w.family("rampart_dfs_chunkservers", "gauge", "Registered chunkservers by state (up: reported within the heartbeat timeout).")
	w.sample("rampart_dfs_chunkservers", float64(up), "state", "up")
	w.sample("rampart_dfs_chunkservers", float64(down), "state", "down")

	perServer := []struct {
		name, help string
		v          func(cs *master.ServerStatus) float64
	}{
		{"rampart_dfs_chunkserver_up", "1 if the chunkserver reported within the heartbeat timeout, else 0.",
			func(cs *master.ServerStatus) float64 { return b2f(cs.Live) }},
		{"rampart_dfs_chunkserver_last_heartbeat_timestamp_seconds", "When the chunkserver last reported, in seconds since the Unix epoch (0: counted lost since).",
			func(cs *master.ServerStatus) float64 {
				if cs.LastHeartbeat.IsZero() {
					return 0
				}
				return float64(cs.LastHeartbeat.UnixNano()) / 1e9
			}},
		{"rampart_dfs_chunkserver_space_total_bytes", "Capacity of the chunkserver's data folders, as last reported.",
			func(cs *master.ServerStatus) float64 { return float64(cs.Total) }},
		{"rampart_dfs_chunkserver_space_free_bytes", "Free space of the chunkserver's data folders, as last reported (less chunks placed since).",
			func(cs *master.ServerStatus) float64 { return float64(cs.Free) }},
		{"rampart_dfs_chunkserver_chunks", "Chunk copies the chunk map places on the chunkserver (current versions).",
			func(cs *master.ServerStatus) float64 { return float64(cs.Chunks) }},
		{"rampart_dfs_chunkserver_bad_copies", "Copies on the chunkserver dropped after a CRC error in the last minute.",
			func(cs *master.ServerStatus) float64 { return float64(cs.BadCopies) }},
		{"rampart_dfs_chunkserver_pending_deletes", "Copies the chunkserver will be told to delete with its next heartbeat.",
			func(cs *master.ServerStatus) float64 { return float64(cs.PendingDeletes) }},
	}
	for _, m := range perServer {
		w.family(m.name, "gauge", m.help)
		for i := range st.Servers {
			w.sample(m.name, m.v(&st.Servers[i]), "addr", st.Servers[i].Addr)
		}
	}

	w.gauge("rampart_dfs_space_total_bytes", "Capacity of the chunkservers that are up.", float64(info.Space.Total))
	w.gauge("rampart_dfs_space_free_bytes", "Free space of the chunkservers that are up.", float64(info.Space.Free))

	w.family("rampart_dfs_chunks", "gauge", "Chunks by replication state: ok (valid copies = goal), undergoal, overgoal, missing (no valid copy).")
	w.sample("rampart_dfs_chunks", float64(info.Chunks.OK), "state", "ok")
	w.sample("rampart_dfs_chunks", float64(info.Chunks.Undergoal), "state", "undergoal")
	w.sample("rampart_dfs_chunks", float64(info.Chunks.Overgoal), "state", "overgoal")
	w.sample("rampart_dfs_chunks", float64(info.Chunks.Missing), "state", "missing")

	cs := info.Chunks.States
	w.family("rampart_dfs_copies", "gauge", "Chunk copies by state: valid, lost (on a down chunkserver), stale (queued for deletion), bad (dropped after a CRC error, last minute).")
	w.sample("rampart_dfs_copies", float64(cs.Valid), "state", "valid")
	w.sample("rampart_dfs_copies", float64(cs.Lost), "state", "lost")
	w.sample("rampart_dfs_copies", float64(cs.Stale), "state", "stale")
	w.sample("rampart_dfs_copies", float64(cs.Bad), "state", "bad")

	w.family("rampart_dfs_chunks_by_copies", "gauge", "The chunk matrix: chunks by goal and number of valid copies (nonzero cells only).")
	for _, c := range st.Copies {
		w.sample("rampart_dfs_chunks_by_copies", float64(c.Chunks), "goal", strconv.Itoa(c.Goal), "copies", strconv.Itoa(c.Copies))
	}

	r := st.Replication
	w.family("rampart_dfs_replication_queue", "gauge", "Chunks the replication loop would act on now: undergoal (a copy to add) and overgoal (a copy to drop); chunks being written wait.")
	w.sample("rampart_dfs_replication_queue", float64(r.Undergoal), "kind", "undergoal")
	w.sample("rampart_dfs_replication_queue", float64(r.Overgoal), "kind", "overgoal")
	w.gauge("rampart_dfs_replications_in_progress", "Chunk copies being made now.", float64(r.InProgress))
	limit := 0.0
	if r.Interval > 0 {
		limit = float64(r.PerTick) / r.Interval.Seconds()
	}
	w.gauge("rampart_dfs_replication_limit_per_second", "Most copies the replication loop adds or drops per second.", limit)

	w.gauge("rampart_dfs_inodes", "Live inodes in the namespace.", float64(st.Inodes))
	w.family("rampart_dfs_meta_sync_info", "gauge", "The metadata sync mode (always: fsync before each reply; interval: fsync in the background), as a label; the value is 1.")
	w.sample("rampart_dfs_meta_sync_info", 1, "mode", st.MetaSync)
	w.gauge("rampart_dfs_meta_sync_interval_seconds", "Period of the background metadata fsync (0 in always mode).", st.MetaSyncInterval.Seconds())

	handles, locks := 0, 0
	for _, s := range st.Sessions {
		handles += s.Handles
		locks += s.Locks
	}
	w.gauge("rampart_dfs_sessions", "Client sessions (connections that opened a file or took a lock).", float64(len(st.Sessions)))
	w.gauge("rampart_dfs_open_handles", "Open file handles of all client sessions.", float64(handles))
	w.gauge("rampart_dfs_locks", "File locks (fcntl and flock) held by all client sessions.", float64(locks))
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

// writeClientRequests writes the master's request counter, if it has one.
func writeClientRequests(w *promWriter, src Source) {
	if _, ok := src.(requestCounter); !ok {
		return
	}
	w.family("rampart_dfs_requests_total", "counter", "Client requests the master ran, by message type (a retried request answered from its record counts once).")
	for _, r := range clientRequests(src) {
		w.sample("rampart_dfs_requests_total", float64(r.Count), "type", r.Type)
	}
}

// writeRequests writes the console's own request counter.
func writeRequests(w *promWriter, n map[routeCode]uint64) {
	keys := make([]routeCode, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].route != keys[j].route {
			return keys[i].route < keys[j].route
		}
		return keys[i].code < keys[j].code
	})
	w.family("rampart_web_requests_total", "counter", "HTTP requests the web console answered, by route and status code.")
	for _, k := range keys {
		w.sample("rampart_web_requests_total", float64(n[k]), "route", k.route, "code", strconv.Itoa(k.code))
	}
}

// metrics serves GET /metrics.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	st, err := s.statusNow()
	if err != nil {
		s.log.Warn("metrics without a master status", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var pw promWriter
	writeStatus(&pw, st)
	writeClientRequests(&pw, s.cfg.Source)
	writeRequests(&pw, s.stats.snapshot())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(pw.b.Bytes())
}
