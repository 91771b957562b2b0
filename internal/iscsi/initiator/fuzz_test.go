package initiator

import "testing"

// FuzzParseTargetPortGroups feeds REPORT TARGET PORT GROUPS answers to the decoder: it
// must never panic, and every descriptor it returns must lie inside the input.
func FuzzParseTargetPortGroups(f *testing.F) {
	f.Add([]byte{0, 0, 0, 24, 0x80, 0x8f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0x01, 0x8f, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{0, 0, 0, 20, 0x10, 0, 0, 0, 0x02, 0x8f, 0, 7, 0, 0, 0, 1, 0, 0, 0, 9})
	f.Add([]byte{0, 0, 0, 200, 0, 0, 0, 1, 0, 0, 0, 255})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		groups, err := ParseTargetPortGroups(b)
		if err != nil {
			return
		}
		need := 4
		for _, g := range groups {
			need += 8 + 4*len(g.Ports)
		}
		if need > len(b) {
			t.Fatalf("%d descriptors need %d bytes, input has %d", len(groups), need, len(b))
		}
	})
}

// FuzzParsePortIdentity feeds device identification pages to the port decoder.
func FuzzParsePortIdentity(f *testing.F) {
	f.Add([]byte{0, 0x83, 0, 16, 0x51, 0x94, 0, 4, 0, 0, 0, 2, 0x51, 0x95, 0, 4, 0, 0, 0, 2})
	f.Add([]byte{0, 0x83, 0, 20, 0x01, 0x03, 0, 16, 0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte{0, 0x83, 0xff, 0xff, 0x51, 0x95, 0, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParsePortIdentity(b)
		if err == nil && id.HasGroup && len(b) < 12 {
			t.Fatalf("a target port group from %d bytes", len(b))
		}
	})
}

// FuzzParseNode feeds node records to the decoder: it must never panic, and what it
// accepts must survive a write and a read unchanged.
func FuzzParseNode(f *testing.F) {
	f.Add(NewNode("iqn.x:t", "10.3.1.1", 1).Marshal())
	f.Add([]byte("# BEGIN RECORD 2.1.8\nnode.name = iqn.a:b\nnode.conn[0].address = ::1\nnode.session.auth.authmethod = CHAP\n"))
	f.Add([]byte("# BEGIN RECORD rampart-1\nnode.name = a\nnode.conn[0].address = h\nnode.tpgt = -1\nnode.session.timeo.replacement_timeout = 1e9\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNode(b)
		if err != nil {
			return
		}
		again, err := ParseNode(n.Marshal())
		if err != nil {
			t.Fatalf("re-reading %q: %v", n.Marshal(), err)
		}
		if again.Target != n.Target || again.Portal != n.Portal || again.TPGT != n.TPGT || (again.CHAP == nil) != (n.CHAP == nil) {
			t.Fatalf("round trip: %+v became %+v", n, again)
		}
	})
}

// FuzzParseReportLUNs: the REPORT LUNS decoder never panics, returns LUNs below 16384
// and never more entries than the input holds.
func FuzzParseReportLUNs(f *testing.F) {
	f.Add([]byte{0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x01, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xf8, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		luns, err := ParseReportLUNs(b)
		if err != nil {
			return
		}
		if 8+8*len(luns) > len(b) {
			t.Fatalf("%d LUNs from %d bytes", len(luns), len(b))
		}
		for _, l := range luns {
			if l >= 1<<14 {
				t.Fatalf("LUN %d out of range", l)
			}
		}
	})
}
