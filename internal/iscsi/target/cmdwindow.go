package target

import "sync"

// cmdWindow is the CmdSN window of a session and its reorder queue (RFC 7143 3.2.2.1).
//
// Non-immediate commands are delivered in CmdSN order. A command that arrives with
// ExpCmdSN < CmdSN <= MaxCmdSN (its predecessor went over another connection of the
// session, or was lost and will be retried) is held; it is delivered, and ExpCmdSN
// moves past it, once every command before it has been. Commands outside the window,
// and duplicates of a CmdSN already received, are dropped silently. Immediate commands
// bypass the queue and never move ExpCmdSN.
//
// Receiving a command is two steps so that a transport can set the command up (a SCSI
// task that gathers its data-out while it waits) between them: receive reserves the
// CmdSN, deliver installs what to run when the command's turn comes. Deliveries run
// one at a time, in CmdSN order, on the goroutine whose deliver call closed the gap;
// they must not call receive or deliver themselves.
//
// MaxCmdSN is ExpCmdSN - 1 plus the free slots of a queue of depth commands (held
// commands occupy slots), and never decreases.
type cmdWindow struct {
	mu       sync.Mutex
	depth    uint32
	exp      uint32
	lastMax  uint32
	inflight uint32 // counted commands received and not yet answered
	// pending holds received non-immediate commands not yet delivered, by CmdSN; nil
	// is a command still being set up by its receiver.
	pending  map[uint32]delivery
	draining bool
}

// delivery is what runs when a command's turn in CmdSN order comes. A *task is one,
// so the SCSI path allocates nothing for it.
type delivery interface{ deliver() }

// deliverFunc adapts a function to delivery.
type deliverFunc func()

func (f deliverFunc) deliver() { f() }

// init starts the window at ExpCmdSN exp (the CmdSN of the login).
func (w *cmdWindow) init(exp uint32, depth int) {
	w.depth = uint32(max(depth, 1))
	w.exp = exp
	w.lastMax = exp + w.depth - 1
	w.pending = map[uint32]delivery{}
}

// receive checks CmdSN sn of a command: immediate ones are always accepted; others
// must be in the window and not yet received. counts says the command occupies a
// queue slot until done is called. It reports whether the command is accepted; an
// accepted non-immediate command must then be passed to deliver.
func (w *cmdWindow) receive(sn uint32, immediate, counts bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !immediate {
		if !snInWindow(sn, w.exp, w.maxLocked()) {
			return false
		}
		if _, dup := w.pending[sn]; dup {
			return false
		}
		w.pending[sn] = nil
	}
	if counts {
		w.inflight++
	}
	return true
}

// deliver runs d when the command with CmdSN sn (accepted by receive) is next in
// order: at once for an immediate command or when sn is ExpCmdSN, otherwise when the
// commands before it have been delivered.
func (w *cmdWindow) deliver(sn uint32, immediate bool, d delivery) {
	if immediate {
		d.deliver()
		return
	}
	w.mu.Lock()
	w.pending[sn] = d
	if w.draining {
		w.mu.Unlock()
		return
	}
	w.draining = true
	for {
		g := w.pending[w.exp]
		if g == nil {
			break
		}
		delete(w.pending, w.exp)
		w.exp++
		w.mu.Unlock()
		g.deliver()
		w.mu.Lock()
	}
	w.draining = false
	w.mu.Unlock()
}

// done frees the queue slot of a counted command.
func (w *cmdWindow) done() {
	w.mu.Lock()
	w.inflight--
	w.mu.Unlock()
}

// maxLocked is ExpCmdSN-1 plus the free slots of the queue, never decreasing.
func (w *cmdWindow) maxLocked() uint32 {
	free := w.depth - min(w.inflight, w.depth)
	m := w.exp - 1 + free
	if int32(m-w.lastMax) > 0 {
		w.lastMax = m
	}
	return w.lastMax
}

// sns returns ExpCmdSN and MaxCmdSN.
func (w *cmdWindow) sns() (exp, max uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.exp, w.maxLocked()
}

// held returns how many commands wait for an earlier CmdSN.
func (w *cmdWindow) held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// snInWindow reports exp <= sn <= max in serial number arithmetic.
func snInWindow(sn, exp, max uint32) bool {
	return int32(sn-exp) >= 0 && int32(max-sn) >= 0
}
