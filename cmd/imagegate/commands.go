package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/imagegate/imagegate/providers/facts"
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
	logger := newLogger(stderr, cfg.Log.Level)
	self, _ := os.ReadFile("/proc/self/cgroup") // absent off Linux: no limit applied
	if msg := applyMemoryLimit(os.Getenv, "/sys/fs/cgroup", self); msg != "" {
		logger.Info(msg)
	}
	return server.Run(ctx, cfg, logger, nil)
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
		out = append(out, r.Facts())
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

// evalCmd evaluates an ImageReview locally with the configured policy and
// prints the decision, its reasons and the facts policy asked for. Exit 0
// when allowed, 1 when denied, 2 for usage errors.
func evalCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", stderr)
	cfgPath := fs.String("config", "", "config file (YAML); without one no registry is allowed")
	file := fs.String("f", "", "ImageReview JSON file (- for stdin)")
	namespace := fs.String("namespace", "default", "namespace, with --image")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the registries")
	var images, annotations stringList
	fs.Var(&images, "image", "container image (repeatable), instead of -f")
	fs.Var(&annotations, "annotation", "ImageReview annotation key=value (repeatable), with --image")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*file == "") == (len(images) == 0) {
		return usageError{fmt.Errorf("eval: give either -f FILE or --image IMAGE…")}
	}
	var body []byte
	var err error
	switch {
	case *file == "-":
		body, err = io.ReadAll(stdinReader)
	case *file != "":
		body, err = os.ReadFile(*file)
	default:
		body, err = reviewFor(images, *namespace, annotations)
	}
	if err != nil {
		return usageError{fmt.Errorf("eval: %w", err)}
	}
	_, input, err := server.DecodeImageReview(body)
	if err != nil {
		return usageError{fmt.Errorf("eval: %w", err)}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	lk, err := server.NewLookup(cfg, nil, 1)
	if err != nil {
		return usageError{err}
	}
	policy, err := server.NewPolicy(ctx, cfg, newLogger(stderr, "error"), nil)
	if err != nil {
		return usageError{err}
	}
	defer policy.Close(ctx)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rec := &recordingFacts{next: lk, seen: map[string]any{}}
	d, err := server.Evaluate(ctx, policy, input, rec)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	out := struct {
		Allowed          bool              `json:"allowed"`
		Reason           string            `json:"reason"`
		AuditAnnotations map[string]string `json:"auditAnnotations,omitempty"`
		Unavailable      bool              `json:"unavailable,omitempty"` // the server would answer 503
		Query            string            `json:"query"`
		Facts            map[string]any    `json:"facts"`
	}{d.Allowed, d.Reason, d.AuditAnnotations, d.Unavailable, policy.Query(), rec.snapshot()}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if !d.Allowed {
		return errDenied
	}
	return nil
}

// errDenied makes `imagegate eval` exit 1 after printing a denial.
var errDenied = errors.New("denied")

var stdinReader io.Reader = os.Stdin

func reviewFor(images []string, namespace string, annotations []string) ([]byte, error) {
	type container struct {
		Image string `json:"image"`
	}
	spec := struct {
		Containers  []container       `json:"containers"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Namespace   string            `json:"namespace"`
	}{Namespace: namespace}
	for _, i := range images {
		spec.Containers = append(spec.Containers, container{Image: i})
	}
	for _, a := range annotations {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("--annotation %q: want key=value", a)
		}
		if spec.Annotations == nil {
			spec.Annotations = map[string]string{}
		}
		spec.Annotations[k] = v
	}
	return json.Marshal(map[string]any{"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview", "spec": spec})
}

// recordingFacts remembers the facts (or errors) policy asked for.
type recordingFacts struct {
	next server.Lookup
	mu   sync.Mutex
	seen map[string]any
}

func (r *recordingFacts) Facts(ctx context.Context, key string) (*facts.Facts, error) {
	f, err := r.next.Facts(ctx, key)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.seen[key] = keyError{Image: key, Error: err.Error()}
	} else {
		r.seen[key] = f
	}
	return f, err
}

func (r *recordingFacts) snapshot() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]any, len(r.seen))
	for k, v := range r.seen {
		out[k] = v
	}
	return out
}
