package master_test

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// BenchmarkRandom4K measures 4 KiB random reads and writes through the
// client library (no FUSE) against a local master and three chunkservers,
// goal 2, four goroutines: go test -bench Random4K ./internal/dfs/master
func BenchmarkRandom4K(b *testing.B) {
	for _, mode := range []string{"read", "write", "write-async"} {
		write, async := mode != "read", mode == "write-async"
		name := mode
		b.Run(name, func(b *testing.B) {
			c := newCluster(b, 3, nil)
			cl := c.client()
			const size = 64 << 20
			a := writeFile(c.t, cl, "f", randomBytes(size))
			var n atomic.Int64
			b.SetParallelism(2) // 2 × GOMAXPROCS goroutines
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(uint64(n.Add(1)), 9))
				buf := make([]byte, 4096)
				for pb.Next() {
					off := int64(rng.IntN(size/4096)) * 4096
					var err error
					if async {
						err = cl.WriteAtAsync(b.Context(), a.Ino, buf, off)
					} else if write {
						err = cl.WriteAt(b.Context(), a.Ino, buf, off)
					} else {
						_, err = cl.ReadAt(b.Context(), a.Ino, buf, off)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := cl.Sync(b.Context(), a.Ino); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkCreateUnlink measures a create and an unlink through the client
// (inside SessionOps, with their intents) and as bare messages.
func BenchmarkCreateUnlink(b *testing.B) {
	for _, bare := range []bool{false, true} {
		name := "session"
		if bare {
			name = "bare"
		}
		b.Run(name, func(b *testing.B) {
			c := newCluster(b, 0, nil)
			cl := c.client()
			p, err := proto.Dial(b.Context(), c.clAddr)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := b.Context()
			for i := 0; i < b.N; i++ {
				n := fmt.Sprintf("f%d", i)
				if !bare {
					if _, err := cl.Create(ctx, proto.RootIno, n, regular(0o644)); err != nil {
						b.Fatal(err)
					}
					if err := cl.Unlink(ctx, proto.RootIno, n, false); err != nil {
						b.Fatal(err)
					}
					continue
				}
				var e proto.Enc
				e.U64(proto.RootIno)
				e.String(n)
				e.U32(syscall.S_IFREG | 0o644)
				e.U32(0)
				e.U32(0)
				e.U32(0)
				e.String("")
				if _, err := p.Call(ctx, proto.MsgCreate, e.B); err != nil {
					b.Fatal(err)
				}
				e = proto.Enc{}
				e.U64(proto.RootIno)
				e.String(n)
				e.U8(0)
				if _, err := p.Call(ctx, proto.MsgUnlink, e.B); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSmallFile measures what a mount does for a 4 KiB file created,
// written and closed (create-open, write, release), and for one opened, read
// and closed, through the client library (no FUSE) against a local master
// and three chunkservers, goal 2: go test -bench SmallFile ./internal/dfs/master
// "offer" creates with CreateOpenW (chunk 0 offered with the create),
// "plain" with CreateOpen (WriteChunk before the first write).
func BenchmarkSmallFile(b *testing.B) {
	for _, mode := range []string{"plain", "offer"} {
		b.Run("create-"+mode, func(b *testing.B) {
			c := newCluster(b, 3, nil)
			cl := c.client()
			ctx := b.Context()
			data := randomBytes(4096)
			create := cl.CreateOpen
			if mode == "offer" {
				create = cl.CreateOpenW
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a, err := create(ctx, proto.RootIno, fmt.Sprintf("f%d", i), regular(0o644))
				if err != nil {
					b.Fatal(err)
				}
				if err := cl.WriteAt(ctx, a.Ino, data, 0); err != nil {
					b.Fatal(err)
				}
				if err := cl.Release(ctx, a.Ino); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("read", func(b *testing.B) {
		c := newCluster(b, 3, nil)
		cl := c.client()
		ctx := b.Context()
		const files = 256
		inos := make([]uint64, files)
		for i := range inos {
			inos[i] = writeFile(b, cl, fmt.Sprintf("f%d", i), randomBytes(4096)).Ino
		}
		buf := make([]byte, 8192)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ino := inos[i%files]
			if _, err := cl.Open(ctx, ino, 0); err != nil {
				b.Fatal(err)
			}
			if n, err := cl.ReadAt(ctx, ino, buf, 0); err != nil || n != 4096 {
				b.Fatalf("read %d bytes, %v", n, err)
			}
			if err := cl.Release(ctx, ino); err != nil {
				b.Fatal(err)
			}
		}
	})
}
