package scsi

import "encoding/binary"

// Sense keys.
const (
	senseNoSense        = 0x0
	senseNotReady       = 0x2
	senseMediumError    = 0x3
	senseHardwareError  = 0x4
	senseIllegalRequest = 0x5
	senseUnitAttention  = 0x6
	senseDataProtect    = 0x7
	senseAbortedCommand = 0xb
	senseMiscompare     = 0xe
)

// Additional sense codes (ASC<<8 | ASCQ).
const (
	ascNone                  = 0x0000
	ascALUATransitioning     = 0x040a
	ascALUAStandby           = 0x040b
	ascALUAUnavailable       = 0x040c
	ascParamListLength       = 0x1a00
	ascMiscompareVerify      = 0x1d00
	ascInvalidOpcode         = 0x2000
	ascLBAOutOfRange         = 0x2100
	ascInvalidFieldCDB       = 0x2400
	ascLUNotSupported        = 0x2500
	ascInvalidFieldParam     = 0x2600
	ascWriteProtected        = 0x2700
	ascPowerOnReset          = 0x2900
	ascModeParamsChanged     = 0x2a01
	ascReservationsPreempted = 0x2a03
	ascReservationsReleased  = 0x2a04
	ascRegistrationsPreempt  = 0x2a05
	ascALUAChanged           = 0x2a06
	ascCapacityChanged       = 0x2a09
	ascSavingNotSupported    = 0x3900
	ascInsufficientResources = 0x5503
	ascReadError             = 0x1100
	ascWriteError            = 0x0c00
	ascInternalFailure       = 0x4400
)

// checkCond is a CHECK CONDITION (or RESERVATION CONFLICT) a command ends with.
// A nil *checkCond means GOOD.
type checkCond struct {
	status    byte
	key       byte
	asc       uint16
	info      uint32
	infoValid bool
	// sks is the sense-key specific field (bytes 15..17), 0 when not valid.
	sks [3]byte
}

var (
	errConflict       = &checkCond{status: StatusReservationConflict}
	errInvalidOpcode  = &checkCond{status: StatusCheckCondition, key: senseIllegalRequest, asc: ascInvalidOpcode}
	errLBARange       = &checkCond{status: StatusCheckCondition, key: senseIllegalRequest, asc: ascLBAOutOfRange}
	errWriteProtected = &checkCond{status: StatusCheckCondition, key: senseDataProtect, asc: ascWriteProtected}
	errParamListLen   = &checkCond{status: StatusCheckCondition, key: senseIllegalRequest, asc: ascParamListLength}
	errLUNotSupported = &checkCond{status: StatusCheckCondition, key: senseIllegalRequest, asc: ascLUNotSupported}
	errSavingNotSupp  = &checkCond{status: StatusCheckCondition, key: senseIllegalRequest, asc: ascSavingNotSupported}
	errMediumRead     = &checkCond{status: StatusCheckCondition, key: senseMediumError, asc: ascReadError}
	errMediumWrite    = &checkCond{status: StatusCheckCondition, key: senseMediumError, asc: ascWriteError}
	errInsufficient   = &checkCond{status: StatusCheckCondition, key: senseIllegalRequest, asc: ascInsufficientResources}
)

// invalidCDB is INVALID FIELD IN CDB pointing at byte idx (bit bit, or -1 for the
// whole byte) of the CDB.
func invalidCDB(idx, bit int) *checkCond {
	return invalidField(true, idx, bit)
}

// invalidParam is INVALID FIELD IN PARAMETER LIST pointing at byte idx of the list.
func invalidParam(idx, bit int) *checkCond {
	return invalidField(false, idx, bit)
}

func invalidField(cdb bool, idx, bit int) *checkCond {
	c := &checkCond{status: StatusCheckCondition, key: senseIllegalRequest, asc: ascInvalidFieldParam}
	c.sks[0] = 0x80
	if cdb {
		c.asc = ascInvalidFieldCDB
		c.sks[0] |= 0x40
	}
	if bit >= 0 {
		c.sks[0] |= 0x08 | byte(bit&7)
	}
	binary.BigEndian.PutUint16(c.sks[1:], uint16(idx))
	return c
}

// miscompare is MISCOMPARE DURING VERIFY with the byte offset of the first mismatch.
func miscompare(off int) *checkCond {
	return &checkCond{status: StatusCheckCondition, key: senseMiscompare, asc: ascMiscompareVerify, info: uint32(off), infoValid: true}
}

// unitAttention is a UNIT ATTENTION condition with the given ASC/ASCQ.
func unitAttention(asc uint16) *checkCond {
	return &checkCond{status: StatusCheckCondition, key: senseUnitAttention, asc: asc}
}

// senseLen is the length of the fixed-format sense data this package returns.
const senseLen = 18

// appendSense appends fixed-format sense data for c to b.
func (c *checkCond) appendSense(b []byte) []byte {
	var s [senseLen]byte
	s[0] = 0x70
	if c.infoValid {
		s[0] |= 0x80
		binary.BigEndian.PutUint32(s[3:], c.info)
	}
	s[2] = c.key
	s[7] = senseLen - 8
	s[12] = byte(c.asc >> 8)
	s[13] = byte(c.asc)
	copy(s[15:], c.sks[:])
	return append(b, s[:]...)
}

// fill sets resp for a command that ended with c.
func (c *checkCond) fill(resp *Response) {
	resp.Status = c.status
	resp.DataIn = nil
	if c.status == StatusCheckCondition {
		resp.Sense = c.appendSense(make([]byte, 0, senseLen))
	}
}
