package scsi

// This file is the contract between the SCSI emulation and its transports (the iSCSI
// target today; others later). A transport builds a Command per SCSI task, with every
// byte of data-out already gathered, calls Dispatcher.Execute, and sends back the
// Response: status, sense, data-in and residuals. Execute may be called concurrently for
// many commands of one connection; the emulation orders what must be ordered.

import "context"

// SAM status codes.
const (
	StatusGood                = 0x00
	StatusCheckCondition      = 0x02
	StatusConditionMet        = 0x04
	StatusBusy                = 0x08
	StatusReservationConflict = 0x18
	StatusTaskSetFull         = 0x28
	StatusACAActive           = 0x30
	StatusTaskAborted         = 0x40
)

// TaskAttr is the SAM task attribute of a command.
type TaskAttr uint8

const (
	TaskSimple TaskAttr = iota
	TaskOrdered
	TaskHeadOfQueue
	TaskACA
)

// PortGroupState is an ALUA asymmetric access state.
type PortGroupState uint8

const (
	ALUAActiveOptimized    PortGroupState = 0x0
	ALUAActiveNonOptimized PortGroupState = 0x1
	ALUAStandby            PortGroupState = 0x2
	ALUAUnavailable        PortGroupState = 0x3
	ALUATransitioning      PortGroupState = 0xf
)

// TargetPort is one SCSI target port: in iSCSI, a target portal group of a target.
type TargetPort struct {
	// Name is the SCSI target port name, for iSCSI "IQN,t,0xTPGT".
	Name string
	// RelativeID is the relative target port identifier (1-based, unique per target).
	RelativeID uint16
	// GroupID is the target port group (ALUA) the port belongs to.
	GroupID uint16
}

// PortGroup is one ALUA target port group with its member ports' relative IDs.
type PortGroup struct {
	ID      uint16
	State   PortGroupState
	PortIDs []uint16
	// Altered says the state was changed while serving (implicit ALUA): REPORT TARGET
	// PORT GROUPS then reports status code 02h.
	Altered bool
}

// Nexus is the I_T nexus a command arrived on: which initiator port, through which
// target port. Reservations and unit attentions are kept per nexus.
type Nexus struct {
	// InitiatorPort is the SCSI initiator port name, for iSCSI "IQN,i,0xISID".
	InitiatorPort string
	// InitiatorName is the initiator device name (the IQN alone), used by ACLs and
	// by PR TransportIDs.
	InitiatorName string
	// Port is the target port the command came through.
	Port TargetPort
	// Groups lists every target port group of the target, for REPORT TARGET PORT GROUPS.
	Groups []PortGroup
}

// ID is a string that identifies the nexus (initiator port plus target port).
func (n *Nexus) ID() string { return n.InitiatorPort + "|" + n.Port.Name }

// Command is one SCSI task as the transport delivers it.
type Command struct {
	Nexus *Nexus
	LUN   uint64 // the LUN as addressed by the initiator (mapped LUN), decoded
	CDB   []byte
	Attr  TaskAttr
	Tag   uint64 // task tag, unique per nexus among outstanding tasks
	// DataOut holds all data the initiator sent (for writes), exactly as received:
	// the transport has gathered immediate, unsolicited and solicited data.
	DataOut []byte
	// ExpectedDataIn is the initiator's expected data-in transfer length (0 if the
	// command is not a read). Response.DataIn is trimmed to it and residuals set.
	ExpectedDataIn uint32
	// ExpectedDataOut is the initiator's expected data-out transfer length.
	ExpectedDataOut uint32
	// Buf, if not nil, is a buffer of at least ExpectedDataIn bytes the emulation may
	// use for Response.DataIn, so reads need no allocation per command.
	Buf []byte
}

// Response is the outcome of a Command.
type Response struct {
	Status byte
	// Sense is fixed-format sense data (nil unless Status is CHECK CONDITION).
	Sense []byte
	// DataIn is the data to return to the initiator, at most ExpectedDataIn bytes.
	DataIn []byte
	// Residual is the number of bytes by which the transfer fell short of (Underflow)
	// or exceeded (Overflow) the initiator's expected length, for the direction used.
	Underflow bool
	Overflow  bool
	Residual  uint32
}

// LUNMap is the set of logical units one nexus can see (after ACL masking).
type LUNMap interface {
	// Lookup returns the logical unit at the mapped LUN, or nil.
	Lookup(lun uint64) *LogicalUnit
	// LUNs lists the mapped LUNs in ascending order, for REPORT LUNS.
	LUNs() []uint64
}

// Dispatcher executes commands addressed to a LUNMap. The zero value is usable.
type Dispatcher struct{}

// Execute runs one command and fills resp. It handles REPORT LUNS, commands to
// unmapped LUNs (LOGICAL UNIT NOT SUPPORTED, INQUIRY with peripheral qualifier 3) and
// hands everything else to the LogicalUnit. It never panics on any CDB or data.
func (Dispatcher) Execute(ctx context.Context, luns LUNMap, cmd *Command, resp *Response) {
	execute(ctx, luns, cmd, resp)
}

// Task management functions that reach the emulation (ABORT TASK is the transport's).
//
//	(*LogicalUnit).Reset(nexus)          LOGICAL UNIT RESET: UAs to other nexuses, release RESERVE
//	(*LogicalUnit).NexusLost(nexus)      the nexus is gone (session closed): drop its UAs,
//	                                     release its RESERVE; persistent reservations stay
//	(*LogicalUnit).AbortTaskSet(nexus)   ABORT TASK SET / CLEAR TASK SET bookkeeping

// TransferTooLong fills resp for a command whose expected transfer length is more than
// the transport accepts: CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB, with
// nothing transferred. The transport answers the command with it instead of rejecting
// the PDU, so the initiator sees a SCSI error it can act on.
func TransferTooLong(resp *Response, expected uint32) {
	c := &checkCond{status: StatusCheckCondition, key: senseIllegalRequest, asc: ascInvalidFieldCDB}
	c.fill(resp)
	resp.Underflow, resp.Overflow, resp.Residual = expected > 0, false, expected
}
