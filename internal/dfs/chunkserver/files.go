package chunkserver

import (
	"container/list"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Open chunk files.
//
// A chunkserver holds millions of chunks but a process may hold only
// RLIMIT_NOFILE descriptors, so a chunk's file is open only while it is in
// use and, afterwards, while it stays among the most recently used: an
// openFiles cache bounds the descriptors of idle chunks. Every access to a
// chunk's file goes between acquire (which opens the file if it is closed
// and pins it) and release; a pinned file is never closed under its user.
// When the descriptors exceed the cap, release and acquire close the least
// recently used idle files. Files in use may exceed the cap for as long as
// they are in use (bounded by the requests in flight). A chunk that is
// deleted is marked dead: its file is closed by its last user, and acquire
// fails with ErrNoChunk from then on, so a late user never opens a file
// another chunk now has at that path. A version move renames the open file;
// a later open uses the new name.

// DefaultOpenFiles caps the idle open chunk files of a store when neither
// the configuration nor the process's descriptor limit asks for fewer.
const DefaultOpenFiles = 1024

// defaultOpenFiles returns DefaultOpenFiles, or an eighth of the process's
// descriptor limit if that is smaller (several chunkservers may share one
// process, next to the network connections), at least 16.
func defaultOpenFiles() int {
	var r unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &r) != nil || r.Cur == unix.RLIM_INFINITY {
		return DefaultOpenFiles
	}
	return int(max(16, min(DefaultOpenFiles, r.Cur/8)))
}

// openFiles is the cache of open chunk files of one store.
type openFiles struct {
	mu   sync.Mutex
	max  int       // descriptors kept open by idle chunks, at most
	fds  int       // descriptors open (idle and in use)
	idle list.List // idle chunks with open files, least recently used first
	// opens counts the files opened (tests).
	opens atomic.Int64
}

func newOpenFiles(max int) *openFiles {
	if max <= 0 {
		max = defaultOpenFiles()
	}
	return &openFiles{max: max}
}

// setMax changes the cap and closes idle files beyond it.
func (o *openFiles) setMax(n int) {
	if n <= 0 {
		n = defaultOpenFiles()
	}
	o.mu.Lock()
	o.max = n
	closing := o.evictLocked()
	o.mu.Unlock()
	closeAll(closing)
}

// fileState is a chunk's part of the cache, guarded by openFiles.mu (f, dfd
// and dtried are also used without it by the chunk's users while they hold
// the file: nobody else touches them then).
type fileState struct {
	files  *openFiles
	f      *os.File
	users  int           // acquires not yet released
	elem   *list.Element // in files.idle while open and unused
	weight int           // descriptors counted in files.fds
	dead   bool          // deleted or the store closed: never open again
	// dfd is the file opened with O_DIRECT (see direct.go) once dtried,
	// -1 if refused.
	dfd    int
	dtried bool
}

// descriptors returns the descriptors the chunk has open.
func (c *chunk) descriptors() int {
	n := 0
	if c.f != nil {
		n++
	}
	if c.dtried && c.dfd >= 0 {
		n++
	}
	return n
}

// acquire returns the chunk's file, opening it if needed, and pins it until
// release. Called with c.mu held (c.path is stable).
func (c *chunk) acquire() (*os.File, error) {
	o := c.files
	o.mu.Lock()
	if c.dead {
		o.mu.Unlock()
		return nil, fmt.Errorf("chunk %016x v%d closed: %w", c.hdr.ID, c.version(), ErrNoChunk)
	}
	if c.f != nil {
		if c.elem != nil {
			o.idle.Remove(c.elem)
			c.elem = nil
		}
		c.users++
		f := c.f
		o.mu.Unlock()
		return f, nil
	}
	c.users++ // the caller holds c.mu: nobody else opens it meanwhile
	o.mu.Unlock()

	f, err := os.OpenFile(c.path, os.O_RDWR, 0)
	o.opens.Add(1)
	o.mu.Lock()
	if err == nil && c.dead {
		f.Close()
		err = fmt.Errorf("chunk %016x v%d closed: %w", c.hdr.ID, c.version(), ErrNoChunk)
	}
	if err != nil {
		c.users--
		o.mu.Unlock()
		return nil, fmt.Errorf("open chunk %016x v%d: %w", c.hdr.ID, c.version(), err)
	}
	c.f, c.dfd, c.dtried = f, -1, false
	c.weight = 1
	o.fds++
	closing := o.evictLocked()
	o.mu.Unlock()
	closeAll(closing)
	return f, nil
}

// install registers f, just created for the chunk, as its open file, idle.
func (c *chunk) install(f *os.File) {
	o := c.files
	o.mu.Lock()
	c.f, c.dfd, c.dtried = f, -1, false
	c.weight = 1
	o.fds++
	c.elem = o.idle.PushBack(c)
	closing := o.evictLocked()
	o.mu.Unlock()
	closeAll(closing)
}

// release unpins the chunk's file taken by acquire.
func (c *chunk) release() {
	o := c.files
	o.mu.Lock()
	c.users--
	o.fds += c.descriptors() - c.weight // an O_DIRECT descriptor opened meanwhile
	c.weight = c.descriptors()
	var closing []*os.File
	if c.users == 0 {
		if c.dead {
			closing = c.closeLocked()
		} else {
			c.elem = o.idle.PushBack(c)
		}
	}
	closing = append(closing, o.evictLocked()...)
	o.mu.Unlock()
	closeAll(closing)
}

// Close marks the chunk dead and closes its file now if nobody uses it, or
// when its last user releases it.
func (c *chunk) Close() error {
	c.retire()
	return nil
}

// retire marks the chunk dead and closes its file now if nobody uses it, or
// when its last user releases it. It reports whether nobody was using it:
// then nobody will, and the file may be given to another chunk.
func (c *chunk) retire() (idle bool) {
	o := c.files
	o.mu.Lock()
	c.dead = true
	var closing []*os.File
	if c.users == 0 {
		closing = c.closeLocked()
	}
	idle = c.users == 0
	o.mu.Unlock()
	closeAll(closing)
	return idle
}

// closeLocked detaches the chunk's descriptors and returns them as files to
// close (after o.mu is released). Called with o.mu held and c idle.
func (c *chunk) closeLocked() []*os.File {
	o := c.files
	if c.elem != nil {
		o.idle.Remove(c.elem)
		c.elem = nil
	}
	var out []*os.File
	if c.f != nil {
		out = append(out, c.f)
	}
	if c.dtried && c.dfd >= 0 {
		out = append(out, os.NewFile(uintptr(c.dfd), c.path))
	}
	o.fds -= c.weight
	c.f, c.dfd, c.dtried, c.weight = nil, -1, false, 0
	return out
}

// evictLocked detaches idle files, least recently used first, until the
// descriptors fit the cap. Called with o.mu held.
func (o *openFiles) evictLocked() []*os.File {
	var out []*os.File
	for o.fds > o.max && o.idle.Len() > 0 {
		c := o.idle.Front().Value.(*chunk)
		out = append(out, c.closeLocked()...)
	}
	return out
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// openDescriptors returns the descriptors the store's chunks hold open
// (tests).
func (o *openFiles) openDescriptors() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fds
}
