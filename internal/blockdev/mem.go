package blockdev

import (
	"fmt"
	"sync"
)

// Mem is a Device in memory, for tests. It tracks which blocks were written so it
// can report LBA status, and it can simulate a crash that loses unflushed writes.
type Mem struct {
	mu        sync.RWMutex
	bs        int
	data      []byte
	mapped    []bool // per block
	readOnly  bool
	durable   []byte // contents as of the last Flush, when crash simulation is on
	crashable bool
}

var (
	_ Device            = (*Mem)(nil)
	_ Unmapper          = (*Mem)(nil)
	_ WriteZeroer       = (*Mem)(nil)
	_ LBAStatusReporter = (*Mem)(nil)
	_ ReadOnlyer        = (*Mem)(nil)
	_ WriteCacher       = (*Mem)(nil)
)

// NewMem returns a zeroed memory device of size bytes with the given block size.
func NewMem(size int64, blockSize int) *Mem {
	if blockSize <= 0 || size%int64(blockSize) != 0 {
		panic(fmt.Sprintf("blockdev: NewMem(%d, %d): size must be a positive multiple of the block size", size, blockSize))
	}
	return &Mem{bs: blockSize, data: make([]byte, size), mapped: make([]bool, size/int64(blockSize))}
}

// SetReadOnly makes the device refuse writes.
func (m *Mem) SetReadOnly(ro bool) { m.mu.Lock(); m.readOnly = ro; m.mu.Unlock() }

// EnableCrash starts crash simulation: from now on Crash reverts the device to its
// contents at the last Flush (or at this call).
func (m *Mem) EnableCrash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crashable = true
	m.durable = append(m.durable[:0], m.data...)
}

// Crash drops every write not made durable by a Flush.
func (m *Mem) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashable {
		copy(m.data, m.durable)
	}
}

func (m *Mem) Size() int64             { return int64(len(m.data)) }
func (m *Mem) BlockSize() int          { return m.bs }
func (m *Mem) ReadOnly() bool          { m.mu.RLock(); defer m.mu.RUnlock(); return m.readOnly }
func (m *Mem) WriteCacheEnabled() bool { return m.crashable }

func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	if err := CheckRange(m, off, int64(len(p))); err != nil {
		return 0, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return copy(p, m.data[off:]), nil
}

func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	if err := CheckRange(m, off, int64(len(p))); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readOnly {
		return 0, ErrReadOnly
	}
	m.mark(off, int64(len(p)), true)
	return copy(m.data[off:], p), nil
}

func (m *Mem) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashable {
		copy(m.durable, m.data)
	}
	return nil
}

func (m *Mem) Unmap(off, length int64) error {
	if err := m.zero(off, length); err != nil {
		return err
	}
	m.mu.Lock()
	m.mark(off, length, false)
	m.mu.Unlock()
	return nil
}

func (m *Mem) WriteZeroes(off, length int64) error { return m.zero(off, length) }

func (m *Mem) zero(off, length int64) error {
	if err := CheckRange(m, off, length); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readOnly {
		return ErrReadOnly
	}
	clear(m.data[off : off+length])
	return nil
}

func (m *Mem) mark(off, length int64, v bool) {
	for b := off / int64(m.bs); b < (off+length)/int64(m.bs); b++ {
		m.mapped[b] = v
	}
}

func (m *Mem) MappedExtent(off int64) (Extent, error) {
	if err := CheckRange(m, off, 0); err != nil || off >= m.Size() {
		return Extent{}, fmt.Errorf("mapped extent at %d: %w", off, ErrOutOfRange)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	b := off / int64(m.bs)
	v := m.mapped[b]
	e := b
	for e < int64(len(m.mapped)) && m.mapped[e] == v {
		e++
	}
	return Extent{Off: off, Length: (e - b) * int64(m.bs), Mapped: v}, nil
}
