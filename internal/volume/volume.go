// Package volume turns a volume spec, the one string that names any volume in rampart,
// into a blockdev.Device.
//
// Specs:
//
//	/path/to/file-or-blockdev        a file or block device
//	raid:MEMBER,MEMBER,...           an array assembled from its members' superblocks
//	iscsi://HOST[:PORT]/IQN/LUN      a remote LUN (several URLs: multipath)
//	dfs://MASTER/path                a file of the distributed file system
//	part:N/M:SPEC                    the N-th of M equal parts of SPEC (see part.go)
//
// Each kind other than plain paths and parts registers itself with Register from its
// own package (in an init function), so this package imports none of them; the binary
// imports the kinds it supports.
package volume

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// Options tune how a volume is opened.
type Options struct {
	ReadOnly bool
	// BlockSize is the logical block size for a new or plain file volume (0: 512).
	BlockSize int
	// Create makes a missing plain file of Size bytes (sparse).
	Create bool
	Size   int64
}

// Opener opens the volume named by spec (the whole spec, prefix included).
type Opener func(ctx context.Context, spec string, opts Options) (blockdev.Device, error)

var (
	mu      sync.RWMutex
	openers = map[string]Opener{}
)

// ErrUnknownKind is returned for a spec whose prefix no kind registered.
var ErrUnknownKind = errors.New("volume: unknown volume kind")

// Register makes a kind of volume known under prefix (for example "raid" for
// "raid:..." and "iscsi" for "iscsi://..."). It panics on a duplicate prefix.
func Register(prefix string, open Opener) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := openers[prefix]; dup {
		panic("volume: kind registered twice: " + prefix)
	}
	openers[prefix] = open
}

// Kinds lists the registered prefixes.
func Kinds() []string {
	mu.RLock()
	defer mu.RUnlock()
	ks := make([]string, 0, len(openers))
	for k := range openers {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Kind returns the prefix of spec ("" for a plain path).
func Kind(spec string) string {
	i := strings.IndexByte(spec, ':')
	if i <= 0 || strings.ContainsRune(spec[:i], '/') {
		return ""
	}
	return spec[:i]
}

// Open opens the volume named by spec.
func Open(ctx context.Context, spec string, opts Options) (blockdev.Device, error) {
	if spec == "" {
		return nil, errors.New("volume: empty volume spec")
	}
	k := Kind(spec)
	if k == "" {
		return blockdev.OpenFile(spec, blockdev.FileOptions{
			ReadOnly: opts.ReadOnly, BlockSize: opts.BlockSize, Create: opts.Create, Size: opts.Size,
		})
	}
	mu.RLock()
	open, ok := openers[k]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("open volume %q: kind %q (known: %s): %w", spec, k, strings.Join(Kinds(), ", "), ErrUnknownKind)
	}
	return open(ctx, spec, opts)
}
