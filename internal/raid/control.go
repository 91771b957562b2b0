package raid

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/volume"
)

// Management requests. The same Request is handled by a running array whether it
// comes over the control socket of a serving process (control_socket.go) or from a
// `rampart raid` command that assembled the array itself (offline).

// Request operations.
const (
	OpStatus  = "status"
	OpFail    = "fail"
	OpRemove  = "remove"
	OpAdd     = "add"
	OpReplace = "replace"
	OpCheck   = "check"
	OpRepair  = "repair"
)

// Request is one management request.
type Request struct {
	Op string `json:"op"`
	// Member names the member acted on (fail, remove, replace), as the caller knows
	// it; MemberUUID, when known from its superblock, identifies it regardless of
	// the path the serving process opened it by.
	Member     string `json:"member,omitempty"`
	MemberUUID string `json:"member_uuid,omitempty"`
	// New is the volume spec of the new member (add, replace). A plain path that does
	// not exist is created, sparse, as large as the members need.
	New   string `json:"new,omitempty"`
	Force bool   `json:"force,omitempty"`
	// MinSpeed and MaxSpeed, when not nil, set the rebuild throttle (bytes/s).
	MinSpeed *int64 `json:"min_speed,omitempty"`
	MaxSpeed *int64 `json:"max_speed,omitempty"`
}

// Response is the answer to a Request: the array's status after it, the scrub result
// of check and repair, or an error.
type Response struct {
	OK     bool         `json:"ok"`
	Error  string       `json:"error,omitempty"`
	Status *Report      `json:"status,omitempty"`
	Scrub  *ScrubResult `json:"scrub,omitempty"`
}

// Handle carries out a management request on the running array. Add and replace
// start the rebuild and return; WaitRebuild waits for it.
func (a *Array) Handle(ctx context.Context, req Request) (resp Response) {
	err := a.handle(ctx, req, &resp)
	if err != nil {
		resp.Error = err.Error()
	}
	resp.OK = err == nil
	rep := a.Status().Report()
	resp.Status = &rep
	return resp
}

func (a *Array) handle(ctx context.Context, req Request, resp *Response) error {
	if a.readOnly && req.Op != OpStatus && req.Op != OpCheck {
		return fmt.Errorf("raid %s: %s: the array is assembled read-only", a.name, req.Op)
	}
	if req.MinSpeed != nil || req.MaxSpeed != nil {
		lo, hi := a.Speed()
		if req.MinSpeed != nil {
			lo = *req.MinSpeed
		}
		if req.MaxSpeed != nil {
			hi = *req.MaxSpeed
		}
		a.SetSpeed(lo, hi)
	}
	switch req.Op {
	case OpStatus:
		return nil
	case OpFail, OpRemove, OpReplace:
		name, err := a.resolveMember(req.Member, req.MemberUUID)
		if err != nil {
			return err
		}
		switch req.Op {
		case OpFail:
			return a.FailMember(name, req.Force)
		case OpRemove:
			return a.RemoveMember(name, req.Force)
		}
		d, err := a.openNew(ctx, req.New)
		if err != nil {
			return err
		}
		if err := a.ReplaceMember(name, d, req.New); err != nil {
			closeDev(d)
			return err
		}
		return nil
	case OpAdd:
		d, err := a.openNew(ctx, req.New)
		if err != nil {
			return err
		}
		if err := a.AddMember(d, req.New); err != nil {
			closeDev(d)
			return err
		}
		return nil
	case OpCheck, OpRepair:
		res, err := a.Check(ctx, req.Op == OpRepair)
		resp.Scrub = &res
		return err
	}
	return fmt.Errorf("raid %s: unknown request %q", a.name, req.Op)
}

func closeDev(d blockdev.Device) {
	if c, ok := d.(blockdev.Closer); ok {
		c.Close()
	}
}

// openNew opens the volume of a new member, creating a missing plain file.
func (a *Array) openNew(ctx context.Context, spec string) (blockdev.Device, error) {
	if spec == "" {
		return nil, fmt.Errorf("raid %s: no new member given", a.name)
	}
	opts := volume.Options{BlockSize: a.g.bs}
	if volume.Kind(spec) == "" {
		if _, err := os.Stat(spec); errors.Is(err, os.ErrNotExist) {
			opts.Create, opts.Size = true, a.g.dataOff+a.g.dataSize
		}
	}
	d, err := volume.Open(ctx, spec, opts)
	if err != nil {
		return nil, fmt.Errorf("raid %s: open new member: %w", a.name, err)
	}
	return d, nil
}

// resolveMember finds the name the array knows a member by: from its device UUID,
// its name, or the same file by another path.
func (a *Array) resolveMember(name, uuid string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	all := append(append([]*member(nil), a.roles...), a.spares...)
	for _, m := range all {
		if m != nil && uuid != "" && m.uuid.String() == uuid {
			return m.name, nil
		}
	}
	for _, m := range all {
		if m != nil && m.name == name {
			return m.name, nil
		}
	}
	if fi, err := os.Stat(name); err == nil {
		for _, m := range all {
			if mi, err := os.Stat(m.name); m != nil && err == nil && os.SameFile(fi, mi) {
				return m.name, nil
			}
		}
	}
	return "", fmt.Errorf("raid %s: %s: %w", a.name, name, ErrNotMember)
}

// Report is the JSON form of Status (`rampart raid status --json`, the control
// socket).
type Report struct {
	Name        string `json:"name"`
	UUID        string `json:"uuid"`
	Level       int    `json:"level"`
	RaidDevices int    `json:"raid_devices"`
	Active      int    `json:"active"`
	// Degraded: fewer active members than raid devices.
	Degraded   bool `json:"degraded"`
	Rebuilding bool `json:"rebuilding"`
	// Progress of the running rebuild (0..1); 1 when the array is not degraded,
	// 0 when it is degraded and nothing rebuilds.
	Progress   float64         `json:"progress"`
	Failed     bool            `json:"failed"`
	Clean      bool            `json:"clean"`
	Events     uint64          `json:"events"`
	ChunkBytes int64           `json:"chunk_bytes"`
	SizeBytes  int64           `json:"size_bytes"`
	Members    []ReportMember  `json:"members"`
	Recovery   *ReportRecovery `json:"recovery,omitempty"`
	// Write-intent bitmap: regions, dirty regions, bytes per region (0: none).
	BitmapRegions int64 `json:"bitmap_regions"`
	BitmapDirty   int64 `json:"bitmap_dirty"`
	BitmapChunk   int64 `json:"bitmap_chunk_bytes"`
	// WriteHole is the RAID-5/6 write-hole policy: "cow", "journal" or "none"
	// ("" for other levels).
	WriteHole string `json:"write_hole,omitempty"`
	// CoW arrays: spare stripes, free ones, and stripes written since the last
	// flush (their old homes are freed by the next one).
	CowSpare     int64 `json:"cow_spare_stripes,omitempty"`
	CowFree      int64 `json:"cow_free_stripes,omitempty"`
	CowUnsettled int64 `json:"cow_unsettled_stripes,omitempty"`
	// ServedBy is the pid of the process serving the array (0: assembled by the
	// command itself).
	ServedBy int `json:"served_by"`
	// Mdstat is the /proc/mdstat-style text.
	Mdstat string `json:"mdstat"`
}

// ReportMember is one role or spare of a Report.
type ReportMember struct {
	Role        int    `json:"role"` // -1: spare
	Name        string `json:"name"`
	State       string `json:"state"` // active, rebuilding, faulty, missing, spare
	WriteMostly bool   `json:"write_mostly,omitempty"`
}

// ReportRecovery is the running rebuild of a Report.
type ReportRecovery struct {
	Member        string  `json:"member"`
	DoneBytes     int64   `json:"done_bytes"`
	TotalBytes    int64   `json:"total_bytes"`
	SpeedBytes    float64 `json:"speed_bytes_per_sec"`
	FinishSeconds float64 `json:"finish_seconds"`
}

// Report converts a Status to its JSON form.
func (st Status) Report() Report {
	r := Report{Name: st.Name, UUID: st.UUID.String(), Level: st.Level, RaidDevices: st.RaidDevices,
		Active: st.Active, Degraded: st.Active < st.RaidDevices, Failed: st.Failed, Clean: st.Clean,
		Events: st.Events, ChunkBytes: st.Chunk, SizeBytes: st.Size, Mdstat: st.String(), ServedBy: st.ServedBy,
		BitmapRegions: st.BitmapRegions, BitmapDirty: st.BitmapDirty, BitmapChunk: st.BitmapChunk,
		CowSpare: st.CowSpare, CowFree: st.CowFree, CowUnsettled: st.CowUnsettled}
	if st.Level == 5 || st.Level == 6 {
		switch st.Policy {
		case PolicyCoW:
			r.WriteHole = "cow"
		case PolicyJournal, PolicyIntentJournal:
			r.WriteHole = "journal"
		default:
			r.WriteHole = "none"
		}
	}
	for _, m := range st.Members {
		state := m.State.String()
		if m.Role < 0 {
			state = "spare"
		}
		r.Members = append(r.Members, ReportMember{Role: m.Role, Name: m.Name, State: state, WriteMostly: m.WriteMostly})
	}
	switch {
	case st.Recovery != nil:
		rc := st.Recovery
		r.Rebuilding = true
		r.Progress = float64(rc.Done) / float64(max(rc.Total, 1))
		r.Recovery = &ReportRecovery{Member: rc.Member, DoneBytes: rc.Done, TotalBytes: rc.Total,
			SpeedBytes: rc.Speed, FinishSeconds: rc.Finish.Seconds()}
	case !r.Degraded:
		r.Progress = 1
	}
	return r
}

// RunDir is where serving processes keep their control sockets and array locks:
// $RAMPART_RUN_DIR/raid, by default /run/rampart/raid.
func RunDir() string {
	d := os.Getenv("RAMPART_RUN_DIR")
	if d == "" {
		d = "/run/rampart"
	}
	return filepath.Join(d, "raid")
}

// SocketPath is the control socket of the array with this UUID.
func SocketPath(u UUID) string { return filepath.Join(RunDir(), u.String()+".sock") }

// ArrayOf reads the superblocks of member specs ("" or "missing": absent) and
// returns the array UUID and the member device UUIDs by spec, from the freshest
// superblock's array. Members without a readable superblock are left out.
func ArrayOf(ctx context.Context, specs []string) (UUID, map[string]UUID, error) {
	var fresh *Superblock
	devs := map[string]UUID{}
	sbs := map[string]*Superblock{}
	var errs []error
	for _, s := range specs {
		if s == "" || s == "missing" {
			continue
		}
		d, err := volume.Open(ctx, s, volume.Options{ReadOnly: true})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sb, err := ReadSuperblock(d)
		closeDev(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", s, err))
			continue
		}
		sbs[s] = sb
		if fresh == nil || sb.Events > fresh.Events {
			fresh = sb
		}
	}
	if fresh == nil {
		return UUID{}, nil, fmt.Errorf("no member with a superblock: %w", errors.Join(errs...))
	}
	for s, sb := range sbs {
		if sb.ArrayUUID == fresh.ArrayUUID {
			devs[s] = sb.DeviceUUID
		}
	}
	return fresh.ArrayUUID, devs, nil
}
