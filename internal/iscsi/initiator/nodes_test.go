package initiator

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNodeRecordRoundTrip(t *testing.T) {
	n := NewNode("iqn.2024-03.org.clusterlab:storage.md0", "10.3.1.1", 1)
	n.CHAP = &CHAP{User: "chunk1", Secret: "secret123456"}
	n.MutualCHAP = &CHAP{User: "target", Secret: "other-secret"}
	n.DataDigest = true
	n.NopInterval = 500 * time.Millisecond
	n.DiscoveryAddress = "10.3.1.1:3260"
	got, err := ParseNode(n.Marshal())
	if err != nil || !reflect.DeepEqual(got, n) {
		t.Errorf("round trip: got %+v, %v\nwant %+v", got, err, n)
	}
}

func TestParseNodeOpenISCSI(t *testing.T) {
	rec := `# BEGIN RECORD 2.1.8
node.name = iqn.2009-02.com.example:test
node.tpgt = 1
node.startup = automatic
node.session.timeo.replacement_timeout = 15
node.conn[0].address = 192.168.1.1
node.conn[0].port = 3260
node.conn[0].timeo.noop_out_interval = 5
node.conn[0].timeo.noop_out_timeout = 10
node.conn[0].iscsi.HeaderDigest = None
node.session.iscsi.FastAbort = Yes
# END RECORD
`
	n, err := ParseNode([]byte(rec))
	want := Node{Target: "iqn.2009-02.com.example:test", Portal: "192.168.1.1:3260", TPGT: 1, Startup: "automatic",
		ReplacementTimeout: 15 * time.Second, NopInterval: 5 * time.Second, NopTimeout: 10 * time.Second}
	if err != nil || !reflect.DeepEqual(n, want) {
		t.Errorf("open-iscsi record: got %+v, %v\nwant %+v", n, err, want)
	}
	for _, bad := range []string{
		"node.name = x\nnode.conn[0].address = h\n",                           // no BEGIN
		"# BEGIN RECORD rampart-9\nnode.name = x\nnode.conn[0].address = h\n", // unknown version
		"# BEGIN RECORD rampart-1\nnode.name = x\n",                           // no address
		"# BEGIN RECORD rampart-1\nnode.name = x\nnode.conn[0].address = h\nnode.conn[0].port = 99999\n",
		"# BEGIN RECORD rampart-1\nnode.name x\n",
	} {
		if _, err := ParseNode([]byte(bad)); err == nil {
			t.Errorf("ParseNode(%q): no error", bad)
		}
	}
}

func TestNodeFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := NewNode("iqn.x:t", "10.3.2.1:3260", 2), NewNode("iqn.x:t", "10.3.1.1", 1)
	for _, n := range []Node{a, b} {
		if err := WriteNode(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadNodes(dir)
	if err != nil || len(got) != 2 || got[0].Portal != "10.3.1.1:3260" || got[1].TPGT != 2 {
		t.Fatalf("ReadNodes = %+v, %v", got, err)
	}
	if err := DeleteNode(dir, a); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadNodes(dir); len(got) != 1 {
		t.Errorf("after delete: %d records, want 1", len(got))
	}
	if err := WriteNode(dir, NewNode("../evil", "h", 1)); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("record with target ../evil: %v, want refused", err)
	}
}

func TestParseReportLUNs(t *testing.T) {
	got, err := ParseReportLUNs([]byte{0, 0, 0, 24, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, // LUN 0
		0, 1, 0, 0, 0, 0, 0, 0, // LUN 1, peripheral
		0x41, 0x02, 0, 0, 0, 0, 0, 0}) // LUN 258, flat
	if err != nil || !reflect.DeepEqual(got, []uint64{0, 1, 258}) {
		t.Errorf("got %v, %v; want [0 1 258]", got, err)
	}
	if _, err := ParseReportLUNs([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0}); err == nil {
		t.Error("logical unit addressing: no error")
	}
}
