package raid

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// TestJournalReplayAfterMemberReplaced is the bug the model test found with seed
// 1795357577379492831 (RAID-5 of 3): an old journal entry whose parts are all on
// members still in the array looked complete, while a later entry of the same stripe
// looked torn because a member that joined its role since had no part of it (its
// journal was wiped when it joined). Replay then wrote the old data back over the
// newer, flushed data. Entries up to the last journal recycle before a member joins
// are now marked durable in the superblocks and never replayed.
func TestJournalReplayAfterMemberReplaced(t *testing.T) {
	ms := memMembers(t, 3, 2<<20)
	if err := Create(ms, CreateOptions{Level: 5, Chunk: 16 << 10, JournalSlots: 16}); err != nil {
		t.Fatal(err)
	}
	a, err := Assemble(t.Context(), ms, AssembleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := a.g.chunk
	// Stripe 0: data 0 on role 0, data 1 on role 1, P on role 2.
	replace := func(old, name string) blockdev.Device {
		t.Helper()
		if err := a.FailMember(old, true); err != nil && !errors.Is(err, ErrNotMember) {
			t.Fatal(err)
		}
		if err := a.RemoveMember(old, false); err != nil {
			t.Fatal(err)
		}
		d := blockdev.NewMem(2<<20, 512)
		if err := a.AddMember(d, name); err != nil {
			t.Fatal(err)
		}
		if err := a.WaitRebuild(t.Context()); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if err := a.FailMember("m1", false); err != nil {
		t.Fatal(err)
	}
	old := bytes.Repeat([]byte{0xAA}, int(c))
	if _, err := a.WriteAt(old, 0); err != nil { // journal entry 1: roles 0 and 2
		t.Fatal(err)
	}
	n1 := replace("m1", "n1")
	newer := bytes.Repeat([]byte{0x55}, int(2*c))
	if _, err := a.WriteAt(newer, 0); err != nil { // entry 2: roles 0, 1 (n1) and 2
		t.Fatal(err)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	n2 := replace("n1", "n2") // n2 has no part of entry 2
	_ = n1
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a, err = Assemble(t.Context(), []Member{ms[0], {Dev: n2, Name: "n2"}, ms[2]}, AssembleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	got := make([]byte, 2*c)
	if _, err := a.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, newer) {
		t.Errorf("stripe 0 after reassembly: got %s, want the flushed 0x55 bytes", describe(got))
	}
}

func describe(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	return fmt.Sprintf("%d bytes starting %x", len(b), b[:min(len(b), 8)])
}
