package multipath

import "testing"

func selectorMap(sel Selector, states ...PathState) *Map {
	m := &Map{cfg: Config{Selector: sel}}
	for _, s := range states {
		m.paths = append(m.paths, &path{state: s})
	}
	return m
}

func indexOf(m *Map, p *path) int {
	for i, q := range m.paths {
		if q == p {
			return i
		}
	}
	return -1
}

func TestSelectors(t *testing.T) {
	all := []int{0, 1, 2}
	t.Run("round-robin spreads over usable paths", func(t *testing.T) {
		m := selectorMap(RoundRobin, PathReady, PathFaulty, PathReady)
		count := map[int]int{}
		for range 100 {
			count[indexOf(m, m.selectPath(all, 4096))]++
		}
		if count[1] != 0 || count[0] != 50 || count[2] != 50 {
			t.Errorf("picks %v, want 50/0/50 (path 1 is faulty)", count)
		}
	})
	t.Run("queue-length takes the fewest commands in flight", func(t *testing.T) {
		m := selectorMap(QueueLength, PathReady, PathReady, PathReady)
		m.paths[0].inflight.Store(3)
		m.paths[1].inflight.Store(1)
		m.paths[2].inflight.Store(2)
		for range 10 {
			if got := indexOf(m, m.selectPath(all, 4096)); got != 1 {
				t.Fatalf("picked path %d, want 1 (1 in flight)", got)
			}
		}
	})
	t.Run("service-time takes the fewest bytes in flight", func(t *testing.T) {
		m := selectorMap(ServiceTime, PathReady, PathReady, PathGhost)
		m.paths[0].inflight.Store(1)
		m.paths[0].inflightBytes.Store(4096)
		m.paths[1].inflight.Store(2)
		m.paths[1].inflightBytes.Store(1 << 20)
		if got := indexOf(m, m.selectPath(all, 4096)); got != 0 {
			t.Errorf("picked path %d, want 0 (4 KiB in flight against 1 MiB; path 2 is a ghost)", got)
		}
		m.paths[0].inflightBytes.Store(2 << 20)
		if got := indexOf(m, m.selectPath(all, 4096)); got != 1 {
			t.Errorf("picked path %d, want 1 once path 0 has 2 MiB in flight", got)
		}
	})
	t.Run("nothing usable", func(t *testing.T) {
		m := selectorMap(ServiceTime, PathFaulty, PathGhost)
		if p := m.selectPath([]int{0, 1}, 512); p != nil {
			t.Errorf("picked path %d from faulty and ghost paths, want none", indexOf(m, p))
		}
	})
}
