package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// StateVersion is the version of the state file's format.
const StateVersion = 1

// State lists what the demo created, in the order it did. It is saved after every
// change, so that after a crash `down` removes exactly what exists.
type State struct {
	Version    int        `json:"version"`
	Dir        string     `json:"dir"`
	Bin        string     `json:"bin"`
	Mode       string     `json:"mode"` // "netns" (root) or "loopback"
	Started    time.Time  `json:"started"`
	UpSeconds  float64    `json:"up_seconds,omitempty"`
	Namespaces []string   `json:"namespaces,omitempty"`
	HostLink   string     `json:"host_link,omitempty"`
	Processes  []Process  `json:"processes,omitempty"`
	Mounts     []string   `json:"mounts,omitempty"` // in the order mounted
	Loops      []Loop     `json:"loops,omitempty"`
	Site       string     `json:"site,omitempty"`         // URL
	WebServer  string     `json:"web_server,omitempty"`   // "nginx" or "rampart"
	Index      string     `json:"index_sha256,omitempty"` // of the site's index.html
	Master     string     `json:"master,omitempty"`       // client address
	mu         sync.Mutex `json:"-"`
	path       string
}

// Process is one role the demo started.
type Process struct {
	Role string   `json:"role"`         // e.g. "chunkserver chunk1"
	NS   string   `json:"ns,omitempty"` // network namespace ("" in loopback mode)
	Pid  int      `json:"pid"`          // of the role's own process
	Args []string `json:"args"`         // the full command line, as started
	Log  string   `json:"log"`          // its stdout and stderr

	done <-chan struct{} // closed when it exits, if this process started it
}

// Loop is a loop device over a file.
type Loop struct {
	Dev  string `json:"dev"`
	File string `json:"file"`
}

// StatePath is the state file of a demo directory.
func StatePath(dir string) string { return filepath.Join(dir, "state.json") }

// NewState starts the state of a demo in dir.
func NewState(dir, bin, mode string) *State {
	return &State{Version: StateVersion, Dir: dir, Bin: bin, Mode: mode, Started: time.Now(), path: StatePath(dir)}
}

// LoadState reads dir's state file. A missing file is fs.ErrNotExist.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(StatePath(dir))
	if err != nil {
		return nil, err
	}
	return DecodeState(b, StatePath(dir))
}

// DecodeState parses a state file's contents (path is only for messages and saves).
func DecodeState(b []byte, path string) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("demo state %s: %w", path, err)
	}
	if s.Version != StateVersion {
		return nil, fmt.Errorf("demo state %s: version %d, this rampart reads %d", path, s.Version, StateVersion)
	}
	for _, p := range s.Processes {
		if p.Pid <= 1 {
			return nil, fmt.Errorf("demo state %s: process %q has pid %d", path, p.Role, p.Pid)
		}
	}
	s.path = path
	return &s, nil
}

// Save writes the state atomically (a temporary file, then rename).
func (s *State) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveLocked()
}

func (s *State) saveLocked() error {
	if s.path == "" {
		return errors.New("demo: state has no file")
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

// update applies f under the lock and saves.
func (s *State) update(f func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	return s.saveLocked()
}

// AddNamespace records a created namespace.
func (s *State) AddNamespace(ns string) error {
	return s.update(func() { s.Namespaces = append(s.Namespaces, ns) })
}

// AddProcess records a started process, replacing an earlier one of the same role
// (a restarted master or chunkserver).
func (s *State) AddProcess(p Process) error {
	return s.update(func() {
		s.Processes = slices.DeleteFunc(s.Processes, func(q Process) bool { return q.Role == p.Role })
		s.Processes = append(s.Processes, p)
	})
}

// RemoveProcess forgets a process that was stopped.
func (s *State) RemoveProcess(role string) error {
	return s.update(func() {
		s.Processes = slices.DeleteFunc(s.Processes, func(q Process) bool { return q.Role == role })
	})
}

// FindProcess returns the process of a role.
func (s *State) FindProcess(role string) (Process, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.Processes {
		if p.Role == role {
			return p, true
		}
	}
	return Process{}, false
}

// AddMount records a mount point.
func (s *State) AddMount(dir string) error {
	return s.update(func() { s.Mounts = append(s.Mounts, dir) })
}

// AddLoop records a loop device.
func (s *State) AddLoop(l Loop) error {
	return s.update(func() { s.Loops = append(s.Loops, l) })
}

// Set changes other fields under the lock and saves.
func (s *State) Set(f func(s *State)) error { return s.update(func() { f(s) }) }
