package scsi

import (
	"encoding/binary"
)

// prOut is a decoded PERSISTENT RESERVE OUT command.
type prOut struct {
	sa, scope, typ  byte
	key, saKey      uint64
	specIPT, allTgt bool
	aptpl           bool
	tids            []prIdent
	// REGISTER AND MOVE
	unreg   bool
	relPort uint16
}

// decodePROut decodes the CDB and parameter list of PERSISTENT RESERVE OUT.
func decodePROut(cdb, d []byte) (prOut, *checkCond) {
	p := prOut{sa: cdb[1] & 0x1f, scope: cdb[2] >> 4, typ: cdb[2] & 0x0f}
	plen := binary.BigEndian.Uint32(cdb[5:])
	if p.sa > 7 {
		return p, invalidCDB(1, 4)
	}
	if plen < prOutParamLenMinimum || len(d) < prOutParamLenMinimum {
		return p, errParamListLen
	}
	p.key = binary.BigEndian.Uint64(d)
	p.saKey = binary.BigEndian.Uint64(d[8:])
	if p.sa == 7 {
		p.unreg = d[17]&0x02 != 0
		p.aptpl = d[17]&0x01 != 0
		p.relPort = binary.BigEndian.Uint16(d[18:])
		n := int(binary.BigEndian.Uint32(d[20:]))
		if 24+n > len(d) {
			return p, errParamListLen
		}
		id, _, ok := decodeTransportID(d[24 : 24+n])
		if !ok {
			return p, invalidParam(24, -1)
		}
		p.tids = []prIdent{id}
		return p, nil
	}
	p.specIPT = d[20]&0x08 != 0
	p.allTgt = d[20]&0x04 != 0
	p.aptpl = d[20]&0x01 != 0
	if !p.specIPT {
		if plen != prOutParamLenMinimum {
			return p, errParamListLen
		}
		return p, nil
	}
	if len(d) < 28 {
		return p, errParamListLen
	}
	n := int(binary.BigEndian.Uint32(d[24:]))
	if 28+n > len(d) {
		return p, errParamListLen
	}
	for off := 28; off < 28+n; {
		id, l, ok := decodeTransportID(d[off : 28+n])
		if !ok {
			return p, invalidParam(off, -1)
		}
		p.tids = append(p.tids, id)
		off += l
	}
	return p, nil
}

func opPROutFn(t *task) *checkCond {
	lu := t.lu
	cdb := t.cdb[:10]
	d := t.dataOut(int(binary.BigEndian.Uint32(cdb[5:])))
	p, c := decodePROut(cdb, d)
	if c != nil {
		return c
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	before := lu.pr.Generation
	beforeResv := lu.pr.Resv
	c = lu.prOutLocked(t.ns, p)
	lu.reserved.Store(lu.pr.active() || lu.resv6 != "")
	if c == nil && (lu.pr.Generation != before || lu.pr.Resv != beforeResv || p.sa <= 1 || p.sa == 6) {
		if err := lu.savePRLocked(); err != nil {
			lu.log.Error("saving persistent reservations", "path", lu.cfg.PRStatePath, "err", err)
			return errInsufficient
		}
	}
	return c
}

// uaToIdents queues asc to every nexus covered by one of ids, except self.
func (lu *LogicalUnit) uaToIdents(asc uint16, ids []prIdent, self *nexusState) {
	for _, ns := range lu.byID {
		if ns == self {
			continue
		}
		for _, id := range ids {
			if id.covers(ns.who) {
				ns.addUA(asc)
				break
			}
		}
	}
}

// prOutLocked applies a PERSISTENT RESERVE OUT service action. lu.mu is held.
func (lu *LogicalUnit) prOutLocked(ns *nexusState, p prOut) *checkCond {
	s := &lu.pr
	me := ns.who
	idx := s.find(me)
	switch p.sa {
	case 0, 6: // REGISTER, REGISTER AND IGNORE EXISTING KEY
		if p.sa == 6 && p.specIPT {
			return invalidParam(20, 3)
		}
		if idx < 0 {
			if p.sa == 0 && p.key != 0 {
				return errConflict
			}
			if p.saKey == 0 {
				return nil
			}
			who := me
			if p.allTgt {
				who.TargetPort, who.RelPort = "", 0
			}
			var add []prReg
			add = append(add, prReg{Key: p.saKey, Who: who})
			for _, id := range p.tids {
				if !p.allTgt {
					id.TargetPort, id.RelPort = me.TargetPort, me.RelPort
				}
				if s.find(id) >= 0 {
					return errConflict
				}
				add = append(add, prReg{Key: p.saKey, Who: id})
			}
			s.Regs = append(s.Regs, add...)
			s.APTPL = p.aptpl
			s.Generation++
			return nil
		}
		if p.specIPT {
			return invalidParam(20, 3)
		}
		if p.sa == 0 && p.key != s.Regs[idx].Key {
			return errConflict
		}
		if p.saKey != 0 {
			s.Regs[idx].Key = p.saKey
			s.APTPL = p.aptpl
			s.Generation++
			return nil
		}
		lu.unregisterLocked(ns, idx)
		s.APTPL = p.aptpl && len(s.Regs) > 0
		s.Generation++
		return nil
	}
	if idx < 0 || p.key != s.Regs[idx].Key {
		return errConflict
	}
	switch p.sa {
	case 1: // RESERVE
		if p.scope != 0 {
			return invalidCDB(2, 7)
		}
		if !validPRType(p.typ) {
			return invalidCDB(2, 3)
		}
		if s.Resv != nil {
			if s.holds(me) && s.Resv.Type == p.typ {
				return nil
			}
			return errConflict
		}
		s.Resv = &prResv{Type: p.typ, Holder: s.Regs[idx].Who, Key: p.key}
		return nil
	case 2: // RELEASE
		if s.Resv == nil || !s.holds(me) {
			return nil
		}
		if p.scope != 0 {
			return invalidCDB(2, 7)
		}
		if s.Resv.Type != p.typ {
			return &checkCond{status: StatusCheckCondition, key: senseIllegalRequest, asc: ascInvalidPRRelease}
		}
		typ := s.Resv.Type
		s.Resv = nil
		if typ != prWriteExclusive && typ != prExclusiveAccess {
			lu.uaToIdents(ascReservationsReleased, regIdents(s.Regs), ns)
		}
		return nil
	case 3: // CLEAR
		ids := regIdents(s.Regs)
		s.Regs, s.Resv = nil, nil
		s.Generation++
		lu.uaToIdents(ascReservationsPreempted, ids, ns)
		return nil
	case 4, 5: // PREEMPT, PREEMPT AND ABORT
		return lu.preemptLocked(ns, idx, p)
	case 7: // REGISTER AND MOVE
		if s.Resv == nil || !s.holds(me) {
			return errConflict
		}
		if allRegistrants(s.Resv.Type) {
			return errConflict
		}
		if p.saKey == 0 {
			return invalidParam(8, -1)
		}
		dst := p.tids[0]
		dst.RelPort = p.relPort
		if p.relPort == me.RelPort {
			dst.TargetPort = me.TargetPort
		}
		if dst.covers(me) || me.covers(dst) {
			return invalidParam(24, -1)
		}
		if j := s.find(dst); j >= 0 {
			s.Regs[j].Key = p.saKey
		} else {
			s.Regs = append(s.Regs, prReg{Key: p.saKey, Who: dst})
		}
		s.Resv = &prResv{Type: s.Resv.Type, Holder: dst, Key: p.saKey}
		if p.unreg {
			s.Regs = append(s.Regs[:idx], s.Regs[idx+1:]...)
		}
		s.APTPL = p.aptpl
		s.Generation++
		return nil
	}
	return invalidCDB(1, 4)
}

func regIdents(regs []prReg) []prIdent {
	ids := make([]prIdent, len(regs))
	for i, r := range regs {
		ids[i] = r.Who
	}
	return ids
}

// unregisterLocked removes registration idx of ns and releases a reservation it held.
func (lu *LogicalUnit) unregisterLocked(ns *nexusState, idx int) {
	s := &lu.pr
	wasHolder := s.holds(ns.who)
	s.Regs = append(s.Regs[:idx], s.Regs[idx+1:]...)
	if !wasHolder || s.Resv == nil {
		return
	}
	typ := s.Resv.Type
	if allRegistrants(typ) && len(s.Regs) > 0 {
		return
	}
	s.Resv = nil
	if typ == prWriteExclusiveRO || typ == prExclusiveAccessRO {
		lu.uaToIdents(ascReservationsReleased, regIdents(s.Regs), ns)
	}
}

// preemptLocked implements PREEMPT and PREEMPT AND ABORT (SPC-4 5.13.11.4).
func (lu *LogicalUnit) preemptLocked(ns *nexusState, idx int, p prOut) *checkCond {
	s := &lu.pr
	me := s.Regs[idx].Who
	notMe := func(r prReg) bool { return r.Who != me }
	if s.Resv == nil || (!allRegistrants(s.Resv.Type) && p.saKey != s.Resv.Key) || (allRegistrants(s.Resv.Type) && p.saKey != 0) {
		// Only remove registrations.
		if p.saKey == 0 {
			return invalidParam(8, -1)
		}
		gone := s.removeRegs(func(r prReg) bool { return r.Key == p.saKey && notMe(r) })
		if len(gone) == 0 && s.Regs[s.find(ns.who)].Key != p.saKey {
			return errConflict
		}
		s.Generation++
		lu.uaToIdents(ascRegistrationsPreempt, gone, ns)
		return nil
	}
	if p.scope != 0 {
		return invalidCDB(2, 7)
	}
	if !validPRType(p.typ) {
		return invalidCDB(2, 3)
	}
	var gone []prIdent
	if allRegistrants(s.Resv.Type) {
		gone = s.removeRegs(notMe)
	} else {
		gone = s.removeRegs(func(r prReg) bool { return r.Key == p.saKey && notMe(r) })
	}
	old := s.Resv
	key := s.Regs[s.find(ns.who)].Key
	s.Resv = &prResv{Type: p.typ, Holder: me, Key: key}
	s.Generation++
	lu.uaToIdents(ascRegistrationsPreempt, gone, ns)
	if old.Type != p.typ {
		lu.uaToIdents(ascReservationsReleased, regIdents(s.Regs), ns)
	}
	return nil
}
