package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/imagegate/imagegate/server"
	"github.com/imagegate/imagegate/server/certs"
	"github.com/imagegate/imagegate/server/config"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("imagegate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	return nil
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	c, err := config.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	cfgPath := fs.String("config", "", "config file (YAML)")
	listen := fs.String("listen", "", "listen address, overrides the config's listen")
	logLevel := fs.String("log-level", "", "debug, info, warn or error; overrides the config's log.level")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usageError{fmt.Errorf("serve: --config is required")}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
		if err := cfg.Validate(); err != nil {
			return usageError{err}
		}
	}
	if err := cfg.ValidateServe(); err != nil {
		return usageError{fmt.Errorf("config %s: %w", *cfgPath, err)}
	}
	return server.Run(ctx, cfg, newLogger(stderr, cfg.Log.Level), nil)
}

// factsCmd prints a JSON array with one element per image, in argument order:
// the facts, or {"image": …, "error": "<code>: …"}. It exits 0 when a key has
// an error; only usage and config errors fail.
func factsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("facts", stderr)
	cfgPath := fs.String("config", "", "config file (YAML); without one no registry is allowed")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the registries")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{fmt.Errorf("facts: at least one IMAGE is required")}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	lk, err := server.NewLookup(cfg, nil, 1)
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	out := make([]any, 0, fs.NArg())
	for _, r := range server.LookupAll(ctx, lk, fs.Args()) {
		if r.Err != nil {
			out = append(out, keyError{Image: r.Key, Error: r.Err.Error()})
			continue
		}
		out = append(out, r.Facts)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// keyError is the element printed for an image whose facts could not be had.
type keyError struct {
	Image string `json:"image"`
	Error string `json:"error"`
}

func certsCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("certs", stderr)
	dir := fs.String("dir", "", "directory to write ca.crt, tls.crt/key and client.crt/key into")
	var hosts stringList
	fs.Var(&hosts, "host", "DNS name or IP for the server certificate (repeatable; default localhost, 127.0.0.1, ::1 and the in-cluster service names)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{fmt.Errorf("certs: --dir is required")}
	}
	b, err := certs.Generate(*dir, hosts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA certificate:      %s\nserver certificate:  %s\nserver key:          %s\nclient certificate:  %s\nclient key:          %s\n", b.CAFile, b.CertFile, b.KeyFile, b.ClientCertFile, b.ClientKeyFile)
	fmt.Fprintf(stdout, "caBundle (for the Gatekeeper Provider spec.caBundle):\n%s\n", base64.StdEncoding.EncodeToString(b.CAPEM))
	return nil
}

func versionCmd(stdout io.Writer) error {
	v := server.Version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Fprintf(stdout, "imagegate %s\n", v)
	return nil
}
