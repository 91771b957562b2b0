package main

// `rampart target serve`: serve the saved configuration, reloading it when the file
// changes or on SIGHUP, or, in the quick form (--listen --iqn --backstore), serve one
// volume as LUN 0 of one target without touching the saved configuration.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/iscsi/target"
)

type targetServeOptions struct {
	*targetOptions
	stateDir string
	// The quick form.
	listen     []string
	iqn        string
	backstore  string
	acls       []string
	chap       string
	mutualCHAP string
	alua       []string // TAG=STATE

	log     *slog.Logger
	poll    time.Duration            // how often the config file is checked (0: 1 s)
	started func(srv *target.Server) // called once the server listens (tests)
}

func newTargetServeCmd(to *targetOptions) *cobra.Command {
	o := &targetServeOptions{targetOptions: to}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the saved configuration (or one volume with --listen --iqn --backstore)",
		Long: `Serve the saved target configuration until SIGINT or SIGTERM. The configuration is
reloaded when its file changes (checked every second) or on SIGHUP, touching only what
changed, so sessions of untouched targets keep going.

The quick form serves one volume as LUN 0 of one target, with one target portal group
(and so one ALUA group) per --listen address, open to every initiator unless --acl:

  rampart target serve --listen 10.3.1.1:3260,10.3.2.1:3260 \
      --iqn iqn.2026-11.org.example:disk0 --backstore /var/lib/rampart/disk0.img`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.log = to.g.logger()
			return runTargetServe(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.stateDir, "state-dir", "", "directory for per-LUN state (persistent reservations)")
	f.StringSliceVar(&o.listen, "listen", nil, "quick form: portals ADDR:PORT, comma-separated, one TPG each")
	f.StringVar(&o.iqn, "iqn", "", "quick form: target name")
	f.StringVar(&o.backstore, "backstore", "", "quick form: volume to serve as LUN 0 (path or volume spec)")
	f.StringArrayVar(&o.acls, "acl", nil, "quick form: admit only this initiator (repeatable)")
	f.StringVar(&o.chap, "chap", "", "quick form: USER:SECRET required of initiators")
	f.StringVar(&o.mutualCHAP, "mutual-chap", "", "quick form: USER:SECRET the target answers with")
	f.StringArrayVar(&o.alua, "alua", nil, "quick form: TAG=STATE, ALUA state of the TPG of the TAG-th --listen portal (repeatable)")
	return cmd
}

func (o *targetServeOptions) quick() bool {
	return len(o.listen) > 0 || o.iqn != "" || o.backstore != "" || len(o.acls) > 0 || o.chap != "" || o.mutualCHAP != "" || len(o.alua) > 0
}

// quickConfig builds the configuration of the quick form.
func (o *targetServeOptions) quickConfig() (target.Config, error) {
	if len(o.listen) == 0 || o.iqn == "" || o.backstore == "" {
		return target.Config{}, usagef("serve: the quick form needs --listen, --iqn and --backstore")
	}
	t := target.Target{IQN: o.iqn, LUNs: []target.LUN{{LUN: 0, Backstore: "lun0"}}, OpenAccess: len(o.acls) == 0}
	for i, l := range o.listen {
		p, err := target.NormalizePortal(l)
		if err != nil {
			return target.Config{}, usagef("serve: --listen %q: %w", l, err)
		}
		t.PortalGroups = append(t.PortalGroups, target.PortalGroup{Tag: uint16(i + 1), Portals: []string{p}})
	}
	for _, a := range o.acls {
		t.ACLs = append(t.ACLs, target.ACL{InitiatorIQN: a})
	}
	for _, c := range []struct {
		flag, v string
		dst     **target.CHAP
	}{{"--chap", o.chap, &t.CHAP}, {"--mutual-chap", o.mutualCHAP, &t.MutualCHAP}} {
		if c.v == "" {
			continue
		}
		u, s, ok := strings.Cut(c.v, ":")
		if !ok || u == "" || s == "" {
			return target.Config{}, usagef("serve: %s: want USER:SECRET", c.flag)
		}
		*c.dst = &target.CHAP{User: u, Secret: s}
	}
	cfg := target.Config{
		Backstores: []target.Backstore{{Name: "lun0", Volume: o.backstore}},
		Targets:    []target.Target{t},
	}
	for _, a := range o.alua {
		tag, st, ok := strings.Cut(a, "=")
		n, err := strconv.ParseUint(tag, 10, 16)
		if !ok || err != nil {
			return target.Config{}, usagef("serve: --alua %q: want TAG=STATE, e.g. 2=standby", a)
		}
		if err := cfg.SetALUA(o.iqn, uint16(n), st); err != nil {
			return target.Config{}, usagef("serve: --alua %q: %w", a, err)
		}
	}
	if err := target.Validate(cfg); err != nil {
		return target.Config{}, usagef("serve: %w", err)
	}
	return cfg, nil
}

func runTargetServe(ctx context.Context, o *targetServeOptions) error {
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	var cfg target.Config
	var err error
	var stat os.FileInfo // of the file loaded, to notice changes from then on
	if o.quick() {
		cfg, err = o.quickConfig()
	} else {
		stat, _ = os.Stat(o.config)
		cfg, err = target.LoadFile(o.config)
		if errors.Is(err, fs.ErrNotExist) {
			return usagef("serve: no saved configuration at %s: create one with `rampart target backstore create` and friends or `rampart target apply FILE`, or use the quick form (--listen --iqn --backstore)", o.config)
		}
	}
	if err != nil {
		return err
	}
	srv, err := target.New(target.Options{Config: cfg, StateDir: o.stateDir, Logger: o.log})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close()
	if o.started != nil {
		o.started(srv)
	}
	if o.quick() {
		<-ctx.Done()
		return nil
	}
	return o.watch(ctx, srv, cfg, stat)
}

// watch reloads the configuration file when it changes or on SIGHUP, until ctx ends.
func (o *targetServeOptions) watch(ctx context.Context, srv *target.Server, cfg target.Config, last os.FileInfo) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	poll := o.poll
	if poll == 0 {
		poll = time.Second
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			o.log.Info("SIGHUP: reloading target configuration", "path", o.config)
			srv.RefreshSizes()
		case <-tick.C:
			srv.RefreshSizes() // a backstore grown behind our back: CAPACITY DATA HAS CHANGED
			fi, err := os.Stat(o.config)
			if err != nil || (last != nil && os.SameFile(fi, last) && fi.ModTime().Equal(last.ModTime()) && fi.Size() == last.Size()) {
				continue
			}
			last = fi
		}
		next, err := target.LoadFile(o.config)
		if err != nil {
			o.log.Error("target configuration not reloaded, still serving the previous one", "err", err)
			continue
		}
		changes := target.Diff(cfg, next)
		if len(changes) == 0 {
			continue
		}
		for _, c := range changes {
			o.log.Info("target configuration change", "change", c)
		}
		if err := srv.Apply(ctx, next); err != nil {
			o.log.Error("target configuration reload failed", "err", fmt.Errorf("apply %s: %w", o.config, err))
			continue
		}
		cfg = next
	}
}
