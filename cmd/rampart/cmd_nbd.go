package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/nbd"
	"github.com/rampart-storage/rampart/internal/volume"
)

type nbdServeOptions struct {
	listen   string
	exports  []string // NAME=VOLUME
	readOnly bool
}

func newNBDCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nbd",
		Short: "Export volumes over the Network Block Device protocol",
	}
	o := &nbdServeOptions{}
	serve := &cobra.Command{
		Use:   "serve --export NAME=VOLUME [--export NAME=VOLUME]... [--listen ADDR:PORT]",
		Short: "Serve volumes to nbd-client, libnbd tools (nbdinfo, nbdcopy) or fio's nbd engine",
		Example: `  rampart nbd serve --listen 127.0.0.1:10809 --export disk=/var/lib/rampart/disk.img
  nbdinfo nbd://127.0.0.1:10809/disk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runNBDServe(cmd.Context(), g, o)
		},
	}
	serve.Flags().StringVar(&o.listen, "listen", "0.0.0.0:10809", "address to listen on: ADDR:PORT, or unix:PATH for a Unix socket (nbd+unix:///NAME?socket=PATH)")
	serve.Flags().StringArrayVar(&o.exports, "export", nil, "export NAME=VOLUME (a volume spec); repeatable")
	serve.Flags().BoolVar(&o.readOnly, "read-only", false, "export every volume read-only")
	cmd.AddCommand(serve)
	return cmd
}

func runNBDServe(ctx context.Context, g *globalOptions, o *nbdServeOptions) error {
	if len(o.exports) == 0 {
		return fmt.Errorf("nbd serve: give at least one --export NAME=VOLUME: %w", errUsage)
	}
	log := g.logger()
	var exports []nbd.Export
	defer func() {
		for _, e := range exports {
			blockdev.Close(e.Device)
		}
	}()
	for _, spec := range o.exports {
		name, vol, ok := strings.Cut(spec, "=")
		if !ok || name == "" || vol == "" {
			return fmt.Errorf("nbd serve: --export %q: want NAME=VOLUME: %w", spec, errUsage)
		}
		d, err := volume.Open(ctx, vol, volume.Options{ReadOnly: o.readOnly})
		if err != nil {
			return fmt.Errorf("nbd serve: export %s: %w", name, err)
		}
		exports = append(exports, nbd.Export{Name: name, Device: d})
	}
	s, err := nbd.New(nbd.Config{Listen: o.listen, Exports: exports, Logger: log})
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	for _, e := range exports {
		log.Info("nbd export", "url", s.URI(e.Name), "size", e.Device.Size())
	}
	<-ctx.Done()
	return s.Close()
}
