package raid

import (
	"fmt"
	"strings"
	"time"
)

// String formats a superblock for `rampart raid examine`.
func (sb *Superblock) String() string {
	var b strings.Builder
	role := fmt.Sprint(sb.Role)
	if sb.Role == RoleSpare {
		role = "spare"
	}
	state := "clean"
	if !sb.Clean {
		state = "active (dirty)"
	}
	policy := "none (resync after an unclean stop)"
	switch sb.Policy {
	case PolicyIntentJournal:
		policy = fmt.Sprintf("journal (%d slots; created with the withdrawn intent policy, journaled in full)", sb.JournalSlots)
	case PolicyJournal:
		policy = fmt.Sprintf("journal (%d slots)", sb.JournalSlots)
	case PolicyCoW:
		policy = fmt.Sprintf("copy-on-write full stripes (%d spare stripes, tags at %d), partial ones journaled (%d slots)", sb.SpareStripes, sb.TagOff, sb.JournalSlots)
	}
	fmt.Fprintf(&b, "          Magic : rampart raid superblock\n        Version : %d\n", sb.Version)
	fmt.Fprintf(&b, "     Array UUID : %s\n           Name : %s\n  Creation Time : %s\n",
		sb.ArrayUUID, sb.Name, time.Unix(int64(sb.CTime), 0).UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "     Raid Level : raid%d\n   Raid Devices : %d\n     Chunk Size : %dK\n",
		sb.Level, sb.RaidDevices, sb.Chunk/1024)
	fmt.Fprintf(&b, "     Block Size : %d\n    Data Offset : %d bytes\n      Data Size : %d bytes per member\n",
		sb.BlockSize, sb.DataOffset, sb.DataSize)
	fmt.Fprintf(&b, "     Write Hole : %s\n    Device UUID : %s\n    Device Role : %s\n",
		policy, sb.DeviceUUID, role)
	if sb.BitmapOff != 0 {
		fmt.Fprintf(&b, "  Intent Bitmap : %d bytes at %d, %dK chunk\n", sb.BitmapBytes, sb.BitmapOff, sb.BitmapChunk/1024)
	}
	fmt.Fprintf(&b, "          State : %s\n         Events : %d\n", state, sb.Events)
	b.WriteString("   Array State : ")
	for _, r := range sb.Roles {
		switch r.State {
		case RoleActive:
			b.WriteByte('A')
		case RoleRebuilding:
			b.WriteByte('R')
		case RoleFaulty:
			b.WriteByte('F')
		default:
			b.WriteByte('.')
		}
	}
	b.WriteString(" ('A' active, 'R' rebuilding, 'F' faulty, '.' missing)\n")
	for i, r := range sb.Roles {
		wm := ""
		if r.Flags&FlagWriteMostly != 0 {
			wm = " write-mostly"
		}
		if r.Flags&FlagReAdd != 0 {
			wm += " re-added"
		}
		fmt.Fprintf(&b, "       Role %3d : %-10s %s%s\n", i, r.State, r.Device, wm)
	}
	return b.String()
}
