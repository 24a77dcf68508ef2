// Package servertest runs a real imagegate server (server.Run, exactly as
// `imagegate serve` runs it) for tests, on the address in the config.
package servertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/imagegate/imagegate/server"
	"github.com/imagegate/imagegate/server/config"
)

// Start validates cfg, serves it until the test ends and returns the bound
// address (use "127.0.0.1:0" as cfg.Listen). A failure to start or an error
// on shutdown fails the test.
func Start(t testing.TB, cfg *config.Config, logger *slog.Logger) string {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, logger, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server.Run() = %v before serving", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("imagegate did not start within 10s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run() on shutdown = %v", err)
		}
	})
	return addr
}
