package scsi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// ErrBadConfig is returned by NewLogicalUnit for an unusable LUConfig or device.
var ErrBadConfig = errors.New("scsi: bad logical unit configuration")

// LUConfig describes one logical unit.
type LUConfig struct {
	// Serial is the unit serial number (VPD page 0x80). It must be stable across
	// restarts: the NAA and T10 designators of VPD page 0x83 derive from it.
	Serial string
	// VendorID (8 chars), ProductID (16) and Revision (4) fill standard INQUIRY data.
	VendorID  string
	ProductID string
	Revision  string
	// PRStatePath is the file where persistent reservations with APTPL are saved;
	// "" keeps them in memory only.
	PRStatePath string
	// Logger receives events of the unit; nil discards them.
	Logger *slog.Logger
}

// Block limits reported in VPD page 0xB0 and enforced by the commands.
const (
	maxTransferBytes    = 64 << 20 // per READ/WRITE command
	maxUnmapBlocks      = 1 << 20
	maxUnmapDescriptors = 256
	maxWriteSameBlocks  = 1 << 22
	maxCAWBlocks        = 255
	optimalGranularity  = 8
)

// LogicalUnit is a SCSI direct-access block device backed by a blockdev.Device. It is
// safe for concurrent use by many nexuses.
type LogicalUnit struct {
	dev blockdev.Device
	cfg LUConfig
	log *slog.Logger
	bs  int
	// maxXfer is the maximum transfer length in blocks (VPD 0xB0).
	maxXfer uint64
	thin    bool
	naa     [16]byte
	closed  atomic.Bool

	// ioLock orders COMPARE AND WRITE against writes: writers hold it shared, CAW
	// exclusively, so ordinary I/O never serialises.
	ioLock sync.RWMutex

	// nexi maps a *Nexus to its state without a lock on the I/O path.
	nexi sync.Map

	// mu guards everything below, the reservation state and byID.
	mu   sync.Mutex
	byID map[string]*nexusState
	// reserved is true whenever a SPC-2 or persistent reservation exists (or any
	// registration), so the I/O path checks conflicts with one atomic load.
	reserved atomic.Bool
	// resv6 is the nexus holding a RESERVE(6/10) reservation, "" if none.
	resv6 string
	pr    prState
	mode  modeState
}

// nexusState is what a logical unit keeps per I_T nexus: pending unit attentions.
type nexusState struct {
	id      string
	port    string // target port name, for AccessStateChanged
	ptr     *Nexus // the Nexus pointer it is cached under in LogicalUnit.nexi
	who     prIdent
	mu      sync.Mutex
	pending atomic.Int32
	ua      []uint16
	sense   *checkCond // deferred sense for REQUEST SENSE
}

// NewLogicalUnit returns a logical unit exporting dev. It loads the APTPL persistent
// reservation state from cfg.PRStatePath when that file exists.
func NewLogicalUnit(dev blockdev.Device, cfg LUConfig) (*LogicalUnit, error) {
	if dev == nil {
		return nil, fmt.Errorf("new logical unit %q: nil device: %w", cfg.Serial, ErrBadConfig)
	}
	bs := dev.BlockSize()
	if bs < 512 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("new logical unit %q: block size %d: %w", cfg.Serial, bs, ErrBadConfig)
	}
	if cfg.Serial == "" {
		if id, ok := dev.(blockdev.Identifier); ok {
			cfg.Serial = serialFrom(id.DeviceID())
		} else {
			return nil, fmt.Errorf("new logical unit: empty serial: %w", ErrBadConfig)
		}
	}
	if cfg.VendorID == "" {
		cfg.VendorID = "RAMPART"
	}
	if cfg.ProductID == "" {
		cfg.ProductID = "rampart disk"
	}
	if cfg.Revision == "" {
		cfg.Revision = "0001"
	}
	lu := &LogicalUnit{dev: dev, cfg: cfg, log: cfg.Logger, bs: bs, byID: map[string]*nexusState{}}
	if lu.log == nil {
		lu.log = slog.New(slog.DiscardHandler)
	}
	lu.maxXfer = uint64(maxTransferBytes / bs)
	_, lu.thin = dev.(blockdev.Unmapper)
	lu.naa = naaFromSerial(cfg.Serial)
	lu.mode.init(blockdev.WriteCacheEnabled(dev))
	if cfg.PRStatePath != "" {
		st, err := loadPRState(cfg.PRStatePath)
		if err != nil {
			return nil, fmt.Errorf("new logical unit %q: %w", cfg.Serial, err)
		}
		if st != nil {
			lu.pr = *st
			lu.reserved.Store(lu.pr.active())
		}
	}
	return lu, nil
}

// serialFrom turns a device identity into a short printable serial.
func serialFrom(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:8])
}

// naaFromSerial derives an NAA IEEE Registered Extended (type 6) designator from the
// serial, so that it is identical through every portal and across restarts.
func naaFromSerial(serial string) [16]byte {
	h := sha256.Sum256([]byte("rampart-naa:" + serial))
	var d [16]byte
	copy(d[:], h[:16])
	// NAA 6, then a 24-bit OUI (locally administered 0x0?; we use 0x001405-like
	// private space is not ours, so derive it and keep the NAA nibble exact).
	d[0] = 0x60 | d[0]&0x0f
	return d
}

// Serial returns the unit serial number.
func (lu *LogicalUnit) Serial() string { return lu.cfg.Serial }

// Device returns the backing device.
func (lu *LogicalUnit) Device() blockdev.Device { return lu.dev }

// Close marks the unit closed; later commands fail with LOGICAL UNIT NOT SUPPORTED.
// It does not close the device, which the caller owns.
func (lu *LogicalUnit) Close() error {
	lu.closed.Store(true)
	return nil
}

// nexus returns the state of n, creating it (with a POWER ON/RESET unit attention) at
// the first command of a new nexus.
func (lu *LogicalUnit) nexus(n *Nexus) *nexusState {
	if v, ok := lu.nexi.Load(n); ok {
		return v.(*nexusState)
	}
	id := n.ID()
	lu.mu.Lock()
	defer lu.mu.Unlock()
	ns := lu.byID[id]
	if ns == nil {
		ns = &nexusState{id: id, port: n.Port.Name, who: identOf(n)}
		ns.addUA(ascPowerOnReset)
		lu.byID[id] = ns
	}
	if ns.ptr != nil && ns.ptr != n {
		// The transport replaced the nexus' description (new port group states): the
		// old pointer is not used again.
		lu.nexi.Delete(ns.ptr)
	}
	ns.ptr = n
	lu.nexi.Store(n, ns)
	return ns
}

// addUA queues a unit attention; POWER ON/RESET supersedes every other.
func (ns *nexusState) addUA(asc uint16) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if asc == ascPowerOnReset {
		ns.ua = append(ns.ua[:0], asc)
	} else {
		for _, a := range ns.ua {
			if a == asc || a == ascPowerOnReset {
				ns.pending.Store(int32(len(ns.ua)))
				return
			}
		}
		ns.ua = append(ns.ua, asc)
	}
	ns.pending.Store(int32(len(ns.ua)))
}

// takeUA pops the oldest unit attention, or returns 0.
func (ns *nexusState) takeUA() uint16 {
	if ns.pending.Load() == 0 {
		return 0
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if len(ns.ua) == 0 {
		return 0
	}
	a := ns.ua[0]
	ns.ua = ns.ua[1:]
	ns.pending.Store(int32(len(ns.ua)))
	return a
}

// clearUA drops every pending unit attention.
func (ns *nexusState) clearUA() {
	ns.mu.Lock()
	ns.ua = nil
	ns.pending.Store(0)
	ns.mu.Unlock()
}

// uaAllLocked queues asc to every known nexus except skip (by ID). lu.mu is held.
func (lu *LogicalUnit) uaAllLocked(asc uint16, skip string) {
	for id, ns := range lu.byID {
		if id != skip {
			ns.addUA(asc)
		}
	}
}

// uaToLocked queues asc to the nexuses matching pred. lu.mu is held.
func (lu *LogicalUnit) uaToLocked(asc uint16, pred func(id string) bool) {
	for id, ns := range lu.byID {
		if pred(id) {
			ns.addUA(asc)
		}
	}
}

// Reset performs a LOGICAL UNIT RESET requested on nexus n: every nexus, n included
// (SAM-5 6.3.3; libiscsi MultipathIO.Reset checks every path), gets a POWER ON/RESET
// unit attention, a RESERVE(6) reservation is released and mode parameters return to
// their defaults. Persistent reservations survive.
func (lu *LogicalUnit) Reset(n *Nexus) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	lu.uaAllLocked(ascPowerOnReset, "")
	lu.resv6 = ""
	lu.reserved.Store(lu.pr.active())
	lu.mode.reset()
}

// NexusLost forgets nexus n (its session ended): its unit attentions are dropped and
// its RESERVE(6) reservation released. Persistent reservations stay.
func (lu *LogicalUnit) NexusLost(n *Nexus) {
	if n == nil {
		return
	}
	lu.nexi.Delete(n)
	id := n.ID()
	lu.mu.Lock()
	defer lu.mu.Unlock()
	delete(lu.byID, id)
	if lu.resv6 == id {
		lu.resv6 = ""
		lu.reserved.Store(lu.pr.active())
	}
}

// AbortTaskSet is told of ABORT TASK SET / CLEAR TASK SET on nexus n. The transport
// aborts the tasks; the unit keeps no queued tasks of its own, so only the deferred
// sense of n is dropped.
func (lu *LogicalUnit) AbortTaskSet(n *Nexus) {
	if n == nil {
		return
	}
	ns := lu.nexus(n)
	ns.mu.Lock()
	ns.sense = nil
	ns.mu.Unlock()
}

// CapacityChanged raises CAPACITY DATA HAS CHANGED on every nexus; call it after the
// device grew or shrank.
func (lu *LogicalUnit) CapacityChanged() {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	lu.uaAllLocked(ascCapacityChanged, "")
}

// blocks is the capacity in logical blocks.
func (lu *LogicalUnit) blocks() uint64 { return uint64(lu.dev.Size()) / uint64(lu.bs) }

// padASCII returns s truncated or space-padded to n bytes.
func padASCII(s string, n int) []byte {
	b := []byte(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '_'
		}
		return r
	}, s))
	if len(b) > n {
		b = b[:n]
	}
	for len(b) < n {
		b = append(b, ' ')
	}
	return b
}
