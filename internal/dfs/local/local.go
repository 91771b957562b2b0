// Package local runs a whole DFS in one process: a master and several
// chunkservers with data folders under one directory. It backs
// `rampart server --dir D` and the end-to-end tests.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/chunkserver"
	"github.com/rampart-storage/rampart/internal/dfs/master"
	"github.com/rampart-storage/rampart/internal/dfs/meta"
)

// Config configures a local cluster.
type Config struct {
	Dir          string        // master metadata in Dir/master, chunk folders in Dir/csN
	Host         string        // listen host; "127.0.0.1" if empty
	ClientPort   int           // master client port; 0 picks a free one
	CSPort       int           // master chunkserver port; 0 picks a free one
	Chunkservers int           // 3 if zero
	Heartbeat    time.Duration // chunkserver heartbeat interval (2s if zero)
	// HeartbeatTimeout: silence after which the master counts a chunkserver
	// lost (master.DefaultHeartbeatTimeout if zero).
	HeartbeatTimeout time.Duration
	Log              *slog.Logger
	MetaSync         meta.Options // when metadata changes are fsynced (see master.Config)
}

// Cluster is a running local DFS.
type Cluster struct {
	Master       *master.Master
	Chunkservers []*chunkserver.Server
}

// Start starts the master and the chunkservers and waits until every
// chunkserver has registered.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Log == nil {
		return nil, errors.New("local: Config.Log is nil")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Chunkservers == 0 {
		cfg.Chunkservers = 3
	}
	hp := func(p int) string { return net.JoinHostPort(cfg.Host, fmt.Sprint(p)) }
	m, err := master.New(master.Config{Dir: filepath.Join(cfg.Dir, "master"),
		ChunkserverListen: hp(cfg.CSPort), ClientListen: hp(cfg.ClientPort), HeartbeatTimeout: cfg.HeartbeatTimeout,
		ReplicationInterval: cfg.HeartbeatTimeout / 4, Log: cfg.Log.With("role", "master"), MetaSync: cfg.MetaSync})
	if err != nil {
		return nil, err
	}
	if err := m.Start(ctx); err != nil {
		m.Close()
		return nil, err
	}
	c := &Cluster{Master: m}
	for i := 0; i < cfg.Chunkservers; i++ {
		s, err := chunkserver.New(chunkserver.Config{
			Data:      []string{filepath.Join(cfg.Dir, fmt.Sprintf("cs%d", i+1))},
			Listen:    hp(0),
			Master:    m.ChunkserverAddr(),
			Heartbeat: cfg.Heartbeat,
			Log:       cfg.Log.With("role", "chunkserver", "n", i+1),
		})
		if err == nil {
			err = s.Start(ctx)
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Chunkservers = append(c.Chunkservers, s)
	}
	for {
		info, err := m.Info()
		if err != nil {
			c.Close()
			return nil, err
		}
		if len(info.Servers) >= cfg.Chunkservers {
			return c, nil
		}
		select {
		case <-ctx.Done():
			c.Close()
			return nil, fmt.Errorf("local cluster: waiting for chunkservers: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops the chunkservers, then the master.
func (c *Cluster) Close() error {
	var errs []error
	for _, s := range c.Chunkservers {
		errs = append(errs, s.Close())
	}
	errs = append(errs, c.Master.Close())
	return errors.Join(errs...)
}
