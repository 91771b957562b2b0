package target

// This file supports the declarative `rampart target apply`: merging a file's objects
// into the saved configuration, and describing what changed between two configurations
// for the reload log of `rampart target serve`.

import (
	"fmt"
	"reflect"
)

// Merge returns base with every backstore and target of file replacing the one of the
// same name (or added), and file's discovery CHAP when it sets one. With replace it
// returns file alone. Either way a backstore of file without a serial keeps the serial
// base has for the same name and volume, or gets a new one, so its identity is stable.
func Merge(base, file Config, replace bool) (Config, error) {
	out := file
	if !replace {
		out = cloneConfig(base)
		for _, b := range file.Backstores {
			if p := out.Backstore(b.Name); p != nil {
				*p = b
			} else {
				out.Backstores = append(out.Backstores, b)
			}
		}
		for _, t := range file.Targets {
			if p := out.Target(t.IQN); p != nil {
				*p = t
			} else {
				out.Targets = append(out.Targets, t)
			}
		}
		if file.DiscoveryCHAP != nil {
			out.DiscoveryCHAP, out.MutualDiscoveryCHAP = file.DiscoveryCHAP, file.MutualDiscoveryCHAP
		}
	} else {
		out.Backstores = append([]Backstore(nil), file.Backstores...)
	}
	for i := range out.Backstores {
		b := &out.Backstores[i]
		if b.Serial != "" {
			continue
		}
		if old := base.Backstore(b.Name); old != nil && old.Volume == b.Volume && old.Serial != "" {
			b.Serial = old.Serial
			continue
		}
		s, err := NewSerial()
		if err != nil {
			return Config{}, err
		}
		b.Serial = s
	}
	return out, nil
}

func cloneConfig(c Config) Config {
	data, err := Encode(c)
	if err != nil {
		return c
	}
	out, err := Decode(data)
	if err != nil {
		return c
	}
	return out
}

// Diff describes, one line per object, how next differs from prev.
func Diff(prev, next Config) []string {
	var out []string
	for _, b := range next.Backstores {
		switch old := prev.Backstore(b.Name); {
		case old == nil:
			out = append(out, fmt.Sprintf("backstore %s added (%s)", b.Name, b.Volume))
		case !reflect.DeepEqual(*old, b):
			out = append(out, fmt.Sprintf("backstore %s changed", b.Name))
		}
	}
	for _, b := range prev.Backstores {
		if next.Backstore(b.Name) == nil {
			out = append(out, fmt.Sprintf("backstore %s removed", b.Name))
		}
	}
	for _, t := range next.Targets {
		old := prev.Target(t.IQN)
		if old == nil {
			out = append(out, fmt.Sprintf("target %s added", t.IQN))
			continue
		}
		out = append(out, diffTarget(*old, t)...)
	}
	for _, t := range prev.Targets {
		if next.Target(t.IQN) == nil {
			out = append(out, fmt.Sprintf("target %s removed", t.IQN))
		}
	}
	if !reflect.DeepEqual(prev.DiscoveryCHAP, next.DiscoveryCHAP) || !reflect.DeepEqual(prev.MutualDiscoveryCHAP, next.MutualDiscoveryCHAP) {
		out = append(out, "discovery CHAP changed")
	}
	return out
}

func diffTarget(a, b Target) []string {
	var out []string
	lunsA, lunsB := map[uint64]string{}, map[uint64]string{}
	for _, l := range a.LUNs {
		lunsA[l.LUN] = l.Backstore
	}
	for _, l := range b.LUNs {
		lunsB[l.LUN] = l.Backstore
		if bs, ok := lunsA[l.LUN]; !ok || bs != l.Backstore {
			out = append(out, fmt.Sprintf("target %s LUN %d -> backstore %s", b.IQN, l.LUN, l.Backstore))
		}
	}
	for _, l := range a.LUNs {
		if _, ok := lunsB[l.LUN]; !ok {
			out = append(out, fmt.Sprintf("target %s LUN %d removed", b.IQN, l.LUN))
		}
	}
	if !reflect.DeepEqual(a.PortalGroups, b.PortalGroups) {
		out = append(out, fmt.Sprintf("target %s portal groups changed", b.IQN))
	}
	if !reflect.DeepEqual(a.ACLs, b.ACLs) || a.OpenAccess != b.OpenAccess {
		out = append(out, fmt.Sprintf("target %s access (ACLs, open access) changed", b.IQN))
	}
	if !reflect.DeepEqual(a.CHAP, b.CHAP) || !reflect.DeepEqual(a.MutualCHAP, b.MutualCHAP) {
		out = append(out, fmt.Sprintf("target %s CHAP changed", b.IQN))
	}
	return out
}
