package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServeWeb serves the files under root over HTTP on listen until ctx ends: the web
// host's server when nginx is not installed (`rampart demo web`).
func ServeWeb(ctx context.Context, root, listen string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("demo web: %w", err)
	}
	srv := &http.Server{
		Handler: http.FileServer(http.Dir(root)),
		// A request stuck on a file system that recovers still gets its answer.
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Info("serving", "root", root, "url", "http://"+ln.Addr().String()+"/")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("demo web: %w", err)
	case <-ctx.Done():
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(c); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("demo web: shutdown: %w", err)
		}
		return nil
	}
}
