package initiator

import (
	"reflect"
	"testing"
)

func TestParseTargetPortGroups(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []TargetPortGroup
	}{
		{"two groups, format 0", []byte{0, 0, 0, 24,
			0x80, 0x8f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
			0x02, 0x8f, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2},
			[]TargetPortGroup{{ID: 1, State: ALUAActiveOptimized, Preferred: true, Ports: []uint16{1}}, {ID: 2, State: ALUAStandby, Ports: []uint16{2}}}},
		{"format 1 header", []byte{0, 0, 0, 20, 0x10, 0, 0, 0,
			0x01, 0x8f, 0, 7, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4},
			[]TargetPortGroup{{ID: 7, State: ALUAActiveNonOptimized, Ports: []uint16{3, 4}}}},
		{"truncated by the allocation length", []byte{0, 0, 0, 24,
			0x0f, 0x8f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
			0x02, 0x8f, 0, 2},
			[]TargetPortGroup{{ID: 1, State: ALUATransitioning, Ports: []uint16{1}}}},
		{"empty", []byte{0, 0, 0, 0}, nil},
	}
	for _, tc := range tests {
		got, err := ParseTargetPortGroups(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := ParseTargetPortGroups([]byte{0, 0}); err == nil {
		t.Error("2 bytes: got no error")
	}
}

func TestParsePortIdentity(t *testing.T) {
	page := []byte{0, 0x83, 0, 36,
		0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7, // NAA of the LU: ignored
		0x51, 0x94, 0, 4, 0, 0, 0, 2, // relative target port 2
		0x51, 0x95, 0, 4, 0, 0, 0, 9, // target port group 9
		0x01, 0x05, 0, 4, 0, 0, 0, 5} // association 0: not the port's
	got, err := ParsePortIdentity(page)
	if want := (PortIdentity{RelativePort: 2, Group: 9, HasGroup: true}); err != nil || got != want {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	if _, err := ParsePortIdentity([]byte{0, 0x80, 0, 0}); err == nil {
		t.Error("page 0x80: got no error")
	}
}

func TestALUASense(t *testing.T) {
	ua := Result{Status: 2, Sense: []byte{0x70, 0, 0x6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2a, 0x06}}
	standby := Result{Status: 2, Sense: []byte{0x72, 0x2, 0x04, 0x0b}}
	other := Result{Status: 2, Sense: []byte{0x72, 0x6, 0x29, 0x00}}
	if !IsALUAChange(ua) || IsALUAChange(standby) || IsALUAChange(other) {
		t.Error("IsALUAChange: want true only for 6/2A/06")
	}
	if !IsPortInactive(standby) || IsPortInactive(ua) || IsPortInactive(Result{}) {
		t.Error("IsPortInactive: want true only for 2/04/0B")
	}
}
