package raid

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"sort"
	"sync"
)

// The stripe journal closes the RAID-5/6 write hole (docs/decisions/2026-11-22-raid-write-hole.md).
// Each member has jSlots slots of journalHeader+chunk bytes after its superblock. A
// stripe update with sequence number seq goes to slot seq%jSlots of every member it
// touches (each member journals its own new shard), the members are flushed, and only
// then is the stripe written in place. Assembly replays, in sequence order, every entry
// whose parts are intact on all present members it names; a torn entry was never
// started in place and is skipped. A slot is reused only after a flush made the entry
// it held durable in place, so only the last jSlots sequence numbers found are replayed.

const journalHeader = 4096

var journalMagic = [8]byte{'R', 'M', 'P', 'J', 'R', 'N', 'L', '1'}

type journal struct {
	gate    sync.RWMutex // held shared by each journaled write; exclusively to recycle slots
	mu      sync.Mutex
	seq     uint64 // last sequence number handed out
	durable uint64 // every entry up to this one is durable in place
}

// durableSeq is the sequence number up to which every entry is durable in place. It
// goes into every superblock: replay ignores those entries, because a member that
// joined a role since then lacks their parts, which would make a later entry look
// torn while an earlier one of the same stripe looks complete.
func (j *journal) durableSeq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.durable
}

type journalPart struct {
	seq, stripe uint64
	in, w       uint32
	role        uint32
	mask        uint64
	homeSeq     uint64 // CoW arrays: the tag sequence number of the stripe's home
	payload     []byte
}

func (a *Array) slotOff(seq uint64) int64 {
	return a.jOff + int64(seq%uint64(a.jSlots))*(journalHeader+a.g.chunk)
}

func encodeJournalHeader(b []byte, uuid UUID, p *journalPart) {
	le := binary.LittleEndian
	copy(b[0:8], journalMagic[:])
	copy(b[8:24], uuid[:])
	le.PutUint64(b[24:], p.seq)
	le.PutUint64(b[32:], p.stripe)
	le.PutUint32(b[40:], p.in)
	le.PutUint32(b[44:], p.w)
	le.PutUint32(b[48:], p.role)
	le.PutUint64(b[52:], p.mask)
	le.PutUint32(b[60:], crc32.Checksum(p.payload, castagnoli))
	le.PutUint32(b[64:], crc32.Checksum(b[:64], castagnoli))
	// An extension with its own CRC, so that headers written before it still
	// check: zero for arrays without CoW.
	le.PutUint64(b[68:], p.homeSeq)
	le.PutUint32(b[76:], crc32.Checksum(b[68:76], castagnoli))
}

// decodeJournalHeader parses a slot header; ok is false for an empty, foreign or
// corrupt header. The payload CRC is returned for the caller to check.
func decodeJournalHeader(b []byte, uuid UUID) (p journalPart, payloadCRC uint32, ok bool) {
	le := binary.LittleEndian
	if len(b) < 68 || !bytes.Equal(b[0:8], journalMagic[:]) || !bytes.Equal(b[8:24], uuid[:]) {
		return p, 0, false
	}
	if crc32.Checksum(b[:64], castagnoli) != le.Uint32(b[64:]) {
		return p, 0, false
	}
	p = journalPart{seq: le.Uint64(b[24:]), stripe: le.Uint64(b[32:]), in: le.Uint32(b[40:]),
		w: le.Uint32(b[44:]), role: le.Uint32(b[48:]), mask: le.Uint64(b[52:])}
	if len(b) >= 80 && crc32.Checksum(b[68:76], castagnoli) == le.Uint32(b[76:]) {
		p.homeSeq = le.Uint64(b[68:])
	}
	return p, le.Uint32(b[60:]), true
}

// journalBatch makes the touched shards of the updates durable in the journals of
// their members, with one write per run of consecutive slots and one flush per member.
// The returned release must be called once the in-place writes are done.
func (a *Array) journalBatch(us []stripeUpdate, roles []*member) (release func(), err error) {
	j := &a.j
	n := uint64(len(us))
	var first uint64
	for {
		j.gate.RLock()
		j.mu.Lock()
		if j.seq+n <= j.durable+uint64(a.jSlots) {
			first = j.seq + 1
			j.seq += n
			j.mu.Unlock()
			break
		}
		j.mu.Unlock()
		j.gate.RUnlock()
		a.recycleJournal()
	}
	masks := make([]uint64, len(us))
	for i, u := range us {
		for jj, t := range u.touched {
			if r := a.g.role(u.s, jj); t && writable(roles[r]) {
				masks[i] |= 1 << uint(r)
			}
		}
	}
	var wg sync.WaitGroup
	for r, m := range roles {
		if !writable(m) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			bp, _ := a.jbufPool.Get().(*[]byte)
			if bp == nil {
				bp = new([]byte)
			}
			defer a.jbufPool.Put(bp)
			// Entries of consecutive sequence numbers sit in consecutive slots
			// until the journal wraps: gather each run into one write.
			var err error
			runOff, run := int64(-1), (*bp)[:0]
			put := func() {
				if len(run) > 0 && err == nil {
					_, err = m.dev.WriteAt(run, runOff)
				}
				runOff, run = -1, run[:0]
			}
			for i, u := range us {
				jj := -1
				for x, t := range u.touched {
					if t && a.g.role(u.s, x) == r {
						jj = x
					}
				}
				if jj < 0 {
					put()
					continue
				}
				seq := first + uint64(i)
				off := a.slotOff(seq)
				if runOff >= 0 && off != runOff+int64(len(run)) {
					put()
				}
				if runOff < 0 {
					runOff = off
				}
				part := &journalPart{seq: seq, stripe: uint64(u.s), in: uint32(u.in), w: uint32(u.w), role: uint32(r), mask: masks[i], homeSeq: u.homeSeq, payload: u.shards[jj]}
				start := len(run)
				size := journalHeader + int(part.w)
				run = slices.Grow(run, size)[:start+size]
				clear(run[start : start+journalHeader])
				encodeJournalHeader(run[start:], a.uuid, part)
				copy(run[start+journalHeader:], part.payload)
			}
			put()
			*bp = run[:0]
			if err == nil {
				err = m.dev.Flush()
			}
			if err != nil {
				a.failMember(r, m, fmt.Errorf("journal: %w", err))
			}
		}()
	}
	wg.Wait()
	if a.failed.Load() {
		j.gate.RUnlock()
		return nil, ErrFailed
	}
	return j.gate.RUnlock, nil
}

// recycleJournal waits for the journaled writes in flight, flushes every member so that
// all journal entries are durable in place, and frees the slots.
func (a *Array) recycleJournal() {
	j := &a.j
	j.gate.Lock()
	defer j.gate.Unlock()
	j.mu.Lock()
	seq := j.seq
	j.mu.Unlock()
	if seq <= j.durable {
		return
	}
	a.flushAll()
	j.mu.Lock()
	j.durable = seq
	j.mu.Unlock()
}

// replayJournal re-applies the intact journal entries at assembly.
func (a *Array) replayJournal() error {
	type entry struct {
		parts map[uint32]journalPart
		mask  uint64
		bad   bool
	}
	entries := map[uint64]*entry{}
	var maxSeq uint64
	watermark := a.j.durable // from the superblocks, set by Assemble
	hdr := make([]byte, journalHeader)
	for r, m := range a.roles {
		if m == nil || m.st() != RoleActive {
			continue
		}
		for slot := 0; slot < a.jSlots; slot++ {
			off := a.jOff + int64(slot)*(journalHeader+a.g.chunk)
			if _, err := m.dev.ReadAt(hdr, off); err != nil {
				return fmt.Errorf("read journal of %s: %w", m.name, err)
			}
			p, crc, ok := decodeJournalHeader(hdr, a.uuid)
			if !ok || p.role != uint32(r) || int64(p.in)+int64(p.w) > a.g.chunk || (p.w == 0 && p.in != 0) || int64(p.w)%int64(a.g.bs) != 0 {
				continue
			}
			maxSeq = max(maxSeq, p.seq)
			p.payload = make([]byte, p.w)
			if _, err := m.dev.ReadAt(p.payload, off+journalHeader); err != nil {
				return fmt.Errorf("read journal of %s: %w", m.name, err)
			}
			e := entries[p.seq]
			if e == nil {
				e = &entry{parts: map[uint32]journalPart{}, mask: p.mask}
				entries[p.seq] = e
			}
			if crc32.Checksum(p.payload, castagnoli) != crc || e.mask != p.mask {
				e.bad = true
				continue
			}
			e.parts[p.role] = p
		}
	}
	seqs := make([]uint64, 0, len(entries))
	for s := range entries {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	// Complete entries in the window, in sequence order.
	type done struct {
		seq    uint64
		parts  map[uint32]journalPart
		stripe int64
		intent bool
	}
	var complete []done
	lastIntent := map[int64]uint64{}
	for _, s := range seqs {
		// A slot is reused only when the entries up to seq-jSlots are durable in
		// place, so anything at or below maxSeq-jSlots is old news; such entries
		// can linger on members that later entries did not touch. Entries up to
		// the superblocks' durable mark are old news too (see durableSeq).
		if s+uint64(a.jSlots) <= maxSeq || s <= watermark {
			continue
		}
		e := entries[s]
		ok := !e.bad && len(e.parts) > 0
		var ref *journalPart
		for r, m := range a.roles {
			if e.mask&(1<<uint(r)) == 0 || m == nil || m.st() != RoleActive {
				continue
			}
			p, found := e.parts[uint32(r)]
			if !found {
				ok = false
				break
			}
			if ref == nil {
				ref = &p
			} else if p.stripe != ref.stripe || p.in != ref.in || p.w != ref.w {
				ok = false
			}
		}
		if !ok {
			continue
		}
		var any journalPart
		for _, p := range e.parts {
			any = p
		}
		d := done{seq: s, parts: e.parts, stripe: int64(any.stripe), intent: any.w == 0}
		complete = append(complete, d)
		if d.intent {
			lastIntent[d.stripe] = s
		}
	}
	// Data entries are replayed, except those a later full-stripe (intent) write of
	// the same stripe superseded: its data is in place, not in the journal. Then the
	// parity of every stripe with an intent entry is recomputed from its data.
	replayed := 0
	for _, d := range complete {
		if d.intent || d.seq < lastIntent[d.stripe] {
			continue
		}
		if a.cow != nil {
			// The stripe moved since (a full-stripe write to a new home settled
			// and this one was freed, maybe reused): the entry is old news.
			var any journalPart
			for _, p := range d.parts {
				any = p
			}
			if seq, ok := a.cowSeqAt(d.stripe); !ok || seq != any.homeSeq {
				continue
			}
		}
		for r, p := range d.parts {
			m := a.roles[r]
			if _, err := m.dev.WriteAt(p.payload, a.g.dataOff+int64(p.stripe)*a.g.chunk+int64(p.in)); err != nil {
				return fmt.Errorf("replay journal onto %s: %w", m.name, err)
			}
		}
		replayed++
	}
	for s := range lastIntent {
		if err := a.resyncParity(s); err != nil {
			return err
		}
		replayed++
	}
	for _, m := range a.roles {
		if m != nil && m.st() == RoleActive {
			if err := m.dev.Flush(); err != nil {
				return fmt.Errorf("flush %s after journal replay: %w", m.name, err)
			}
		}
	}
	if replayed > 0 {
		a.log.Info("raid journal replayed", "array", a.name, "entries", replayed)
	}
	// Torn entries must never be replayed later (when fewer members remain they could
	// look complete): wipe every journal now that the replayed ones are durable.
	// Members being rebuilt too: their old parts could otherwise complete an old
	// entry once they are active and the other members of that entry are gone.
	for _, m := range append(append([]*member(nil), a.roles...), a.spares...) {
		if m != nil && m.st() != RoleFaulty {
			if err := a.wipeJournal(m); err != nil {
				return err
			}
		}
	}
	maxSeq = max(maxSeq, watermark)
	a.j.seq, a.j.durable = maxSeq, maxSeq
	return nil
}

// wipeJournal clears the slot headers of a member's journal and flushes.
func (a *Array) wipeJournal(m *member) error {
	if !a.journaled() {
		return nil
	}
	zero := make([]byte, journalHeader)
	for slot := 0; slot < a.jSlots; slot++ {
		if _, err := m.dev.WriteAt(zero, a.jOff+int64(slot)*(journalHeader+a.g.chunk)); err != nil {
			return fmt.Errorf("wipe journal of %s: %w", m.name, err)
		}
	}
	if err := m.dev.Flush(); err != nil {
		return fmt.Errorf("wipe journal of %s: %w", m.name, err)
	}
	return nil
}

// journaled reports whether the array keeps a stripe journal. Arrays created with
// the withdrawn intent policy (1) are journaled in full; their replay still
// understands intent entries. CoW arrays journal their partial-stripe writes.
func (a *Array) journaled() bool {
	return a.policy == PolicyIntentJournal || a.policy == PolicyJournal || a.policy == PolicyCoW
}

// resyncParity recomputes the parity of stripe s from its data (at assembly). With a
// data member missing it cannot, and says so.
func (a *Array) resyncParity(s int64) error {
	shards := a.newShards(a.g.chunk)
	k := a.g.dataDisks()
	moff := s * a.g.chunk
	for j := 0; j < k; j++ {
		m := a.roles[a.g.role(s, j)]
		if m == nil || m.st() != RoleActive {
			a.log.Error("raid journal: cannot resync the parity of a full-stripe write with a data member missing", "array", a.name, "stripe", s)
			return nil
		}
		if _, err := m.dev.ReadAt(shards[j], a.g.dataOff+moff); err != nil {
			return fmt.Errorf("replay journal: read %s: %w", m.name, err)
		}
	}
	if err := a.encode(shards); err != nil {
		return err
	}
	for j := k; j < len(shards); j++ {
		if m := a.roles[a.g.role(s, j)]; m != nil && m.st() == RoleActive {
			if _, err := m.dev.WriteAt(shards[j], a.g.dataOff+moff); err != nil {
				return fmt.Errorf("replay journal onto %s: %w", m.name, err)
			}
		}
	}
	return nil
}
