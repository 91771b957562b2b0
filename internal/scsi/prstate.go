package scsi

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// prStateVersion is the version of the APTPL state file (docs/formats/scsi-pr-state.md).
const prStateVersion = 1

// ErrPRState is returned when the APTPL state file cannot be used.
var ErrPRState = errors.New("scsi: bad persistent reservation state file")

type prFile struct {
	Version int     `json:"version"`
	State   prState `json:"state"`
}

// loadPRState reads the APTPL state at path; a missing file is no state.
func loadPRState(path string) (*prState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load persistent reservations %s: %w", path, err)
	}
	var f prFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("load persistent reservations %s: %w: %w", path, ErrPRState, err)
	}
	if f.Version != prStateVersion {
		return nil, fmt.Errorf("load persistent reservations %s: version %d: %w", path, f.Version, ErrPRState)
	}
	if !f.State.APTPL {
		return nil, nil
	}
	for _, r := range f.State.Regs {
		if r.Key == 0 || r.Who.Initiator == "" {
			return nil, fmt.Errorf("load persistent reservations %s: registration %+v: %w", path, r, ErrPRState)
		}
	}
	if r := f.State.Resv; r != nil && !validPRType(r.Type) {
		return nil, fmt.Errorf("load persistent reservations %s: reservation type %d: %w", path, r.Type, ErrPRState)
	}
	return &f.State, nil
}

// savePRLocked writes the state atomically (temp file, fsync, rename, directory fsync)
// when APTPL is set, and removes the file when it is not. lu.mu is held.
func (lu *LogicalUnit) savePRLocked() error {
	path := lu.cfg.PRStatePath
	if path == "" {
		return nil
	}
	if !lu.pr.APTPL {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove persistent reservations %s: %w", path, err)
		}
		return nil
	}
	b, err := json.MarshalIndent(prFile{Version: prStateVersion, State: lu.pr}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode persistent reservations %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".prstate-*")
	if err != nil {
		return fmt.Errorf("save persistent reservations %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save persistent reservations %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
