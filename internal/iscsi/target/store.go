package target

// This file persists a Config as YAML on disk: the file the `rampart target` CLI edits
// and `rampart target serve` serves. Saves are atomic (temp file, fsync, rename, fsync of
// the directory), keep the previous versions as PATH.1 … PATH.N like targetcli's
// backups, and are serialised between processes by an flock on PATH.lock.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"
)

// DefaultConfigPath is where the CLI keeps the target configuration.
const DefaultConfigPath = "/etc/rampart/target.yaml"

// ConfigVersion is the version of the file format written by Encode.
const ConfigVersion = 1

// DefaultBackups is how many previous versions a Store keeps.
const DefaultBackups = 5

// ErrConfigFile is wrapped by every error about the content of a configuration file.
var ErrConfigFile = errors.New("target: bad configuration file")

// configFile is the on-disk form: a version, then the Config's fields inline.
type configFile struct {
	Version int `json:"version"`
	Config
}

// Decode parses a configuration file. Unknown fields, duplicate keys and versions
// other than ConfigVersion are refused. It does not validate the Config.
func Decode(data []byte) (Config, error) {
	var f configFile
	if len(bytes.TrimSpace(data)) == 0 {
		return Config{}, fmt.Errorf("%w: empty file (want at least \"version: %d\")", ErrConfigFile, ConfigVersion)
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfigFile, err)
	}
	switch f.Version {
	case ConfigVersion:
	case 0:
		return Config{}, fmt.Errorf("%w: missing \"version: %d\"", ErrConfigFile, ConfigVersion)
	default:
		return Config{}, fmt.Errorf("%w: unknown version %d (this rampart reads version %d)", ErrConfigFile, f.Version, ConfigVersion)
	}
	return f.Config, nil
}

// Encode renders cfg as a version-stamped YAML configuration file.
func Encode(cfg Config) ([]byte, error) {
	out, err := yaml.Marshal(configFile{Version: ConfigVersion, Config: cfg})
	if err != nil {
		return nil, fmt.Errorf("encode target configuration: %w", err)
	}
	return out, nil
}

// LoadFile reads, decodes and validates the configuration file at path.
func LoadFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("target configuration: %w", err)
	}
	cfg, err := Decode(data)
	if err != nil {
		return Config{}, fmt.Errorf("target configuration %s: %w", path, err)
	}
	if err := Validate(cfg); err != nil {
		return Config{}, fmt.Errorf("target configuration %s: %w", path, err)
	}
	return cfg, nil
}

// Store is a configuration file with its backups and lock.
type Store struct {
	Path    string // the YAML file; its directory is created on first save
	Backups int    // previous versions kept as Path.1 … Path.N; 0 means DefaultBackups, <0 none
}

// NewStore returns a Store at path (DefaultConfigPath when empty).
func NewStore(path string) *Store {
	if path == "" {
		path = DefaultConfigPath
	}
	return &Store{Path: path}
}

func (s *Store) backups() int {
	switch {
	case s.Backups == 0:
		return DefaultBackups
	case s.Backups < 0:
		return 0
	}
	return s.Backups
}

// Load returns the saved configuration; a missing file is an empty Config.
func (s *Store) Load() (Config, error) {
	cfg, err := LoadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, nil
	}
	return cfg, err
}

// Save validates cfg and writes it atomically, under the store's lock.
func (s *Store) Save(cfg Config) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return s.save(cfg)
}

// Update runs edit on the saved configuration and saves the result, holding the lock
// from load to save so concurrent updates (two CLI invocations) are serialised and
// none is lost. Nothing is written when edit fails or the result is invalid.
func (s *Store) Update(edit func(*Config) error) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	cfg, err := s.Load()
	if err != nil {
		return err
	}
	if err := edit(&cfg); err != nil {
		return err
	}
	return s.save(cfg)
}

// lock takes an exclusive flock on Path.lock, creating the directory if needed.
func (s *Store) lock() (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return nil, fmt.Errorf("target configuration %s: %w", s.Path, err)
	}
	f, err := os.OpenFile(s.Path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("target configuration lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("target configuration lock %s: %w", f.Name(), err)
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// save writes cfg; the caller holds the lock.
func (s *Store) save(cfg Config) error {
	if err := Validate(cfg); err != nil {
		return err
	}
	data, err := Encode(cfg)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(s.Path)
	switch {
	case err == nil && bytes.Equal(old, data):
		return nil // unchanged: keep the backups as they are
	case err == nil:
		if err := s.rotate(); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("target configuration: %w", err)
	}
	return writeAtomic(s.Path, data)
}

// rotate shifts Path.1 … Path.N-1 up by one and links the current file as Path.1.
func (s *Store) rotate() error {
	n := s.backups()
	if n == 0 {
		return nil
	}
	name := func(i int) string { return s.Path + "." + strconv.Itoa(i) }
	for i := n - 1; i >= 1; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("target configuration backup %s: %w", name(i), err)
		}
	}
	if err := os.Remove(name(1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("target configuration backup %s: %w", name(1), err)
	}
	if err := os.Link(s.Path, name(1)); err != nil {
		data, rerr := os.ReadFile(s.Path)
		if rerr != nil {
			return fmt.Errorf("target configuration backup: %w", rerr)
		}
		if werr := writeAtomic(name(1), data); werr != nil {
			return werr
		}
	}
	return nil
}

// writeAtomic replaces path with data: temp file in the same directory, fsync,
// rename, fsync of the directory.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("save %s: open directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save %s: fsync directory: %w", path, err)
	}
	return nil
}
