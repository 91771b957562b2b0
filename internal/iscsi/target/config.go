package target

// This file is the contract between the target server (server*.go: sessions, portals,
// logical units) and the configuration tools (persistence, the `rampart target` CLI, the
// declarative file). Config is the whole desired state; Server.Apply moves a running
// server to it, touching only what changed, so other sessions keep going.

// Config is everything a target server serves.
type Config struct {
	Backstores []Backstore `json:"backstores,omitempty"`
	Targets    []Target    `json:"targets,omitempty"`
	// DiscoveryCHAP, when set, is required of initiators in SendTargets discovery
	// sessions; MutualDiscoveryCHAP is what the target answers with.
	DiscoveryCHAP       *CHAP `json:"discovery_chap,omitempty"`
	MutualDiscoveryCHAP *CHAP `json:"mutual_discovery_chap,omitempty"`
}

// Backstore is a volume that targets can map as a LUN.
type Backstore struct {
	Name string `json:"name"` // unique among backstores
	// Volume is a volume spec (see internal/volume): a path, raid:..., iscsi://...
	Volume string `json:"volume"`
	// Size, when not 0 and the volume is a missing plain file, creates it sparse.
	Size      int64 `json:"size,omitempty"`
	BlockSize int   `json:"block_size,omitempty"` // 512 (default) or 4096, for plain files
	ReadOnly  bool  `json:"read_only,omitempty"`
	// Serial is the unit serial number (VPD 0x80); the NAA designator (VPD 0x83) is
	// derived from it. Tools generate one when the backstore is created so that it
	// is stable across restarts; when empty the server derives one from Volume.
	Serial string `json:"serial,omitempty"`
}

// Target is one iSCSI target (one IQN).
type Target struct {
	IQN string `json:"iqn"`
	// PortalGroups are the target portal groups; each is also one ALUA target port
	// group. A target with no portal group is not reachable.
	PortalGroups []PortalGroup `json:"portal_groups,omitempty"`
	LUNs         []LUN         `json:"luns,omitempty"`
	// ACLs list the initiators allowed to log in. With none and OpenAccess false no
	// initiator may log in; with OpenAccess every initiator may, seeing every LUN.
	ACLs       []ACL `json:"acls,omitempty"`
	OpenAccess bool  `json:"open_access,omitempty"`
	// CHAP, when set, is required of every initiator that has no CHAP of its own ACL;
	// MutualCHAP is the target's answer for mutual authentication.
	CHAP       *CHAP `json:"chap,omitempty"`
	MutualCHAP *CHAP `json:"mutual_chap,omitempty"`
}

// PortalGroup is a target portal group: a tag and the portals (ADDR:PORT) it listens on.
// It is also one ALUA target port group, whose ID is the tag.
type PortalGroup struct {
	Tag     uint16   `json:"tag"`
	Portals []string `json:"portals"`
	// ALUA is the asymmetric access state of the group: "active-optimized" (the
	// default, also ""), "active-non-optimized", "standby" or "unavailable". Standby
	// and unavailable groups answer media access with NOT READY (04/0B, 04/0C);
	// changing it while serving raises ASYMMETRIC ACCESS STATE CHANGED on every
	// nexus of the target.
	ALUA string `json:"alua,omitempty"`
}

// ALUA states of PortalGroup.ALUA.
const (
	ALUAActiveOptimized    = "active-optimized"
	ALUAActiveNonOptimized = "active-non-optimized"
	ALUAStandby            = "standby"
	ALUAUnavailable        = "unavailable"
)

// LUN maps a backstore into a target under a LUN number.
type LUN struct {
	LUN       uint64 `json:"lun"`
	Backstore string `json:"backstore"`
}

// ACL admits one initiator. MappedLUNs, when not empty, masks the target's LUNs: the
// initiator sees only these, under their mapped numbers.
type ACL struct {
	InitiatorIQN string      `json:"initiator_iqn"`
	MappedLUNs   []MappedLUN `json:"mapped_luns,omitempty"`
	CHAP         *CHAP       `json:"chap,omitempty"`
	MutualCHAP   *CHAP       `json:"mutual_chap,omitempty"`
}

// MappedLUN shows the target's LUN TargetLUN to an ACL's initiator as LUN.
type MappedLUN struct {
	LUN       uint64 `json:"lun"`
	TargetLUN uint64 `json:"target_lun"`
}

// CHAP is a CHAP name and secret (RFC 1994; 12 to 16 bytes of secret for open-iscsi).
type CHAP struct {
	User   string `json:"user"`
	Secret string `json:"secret"`
}
