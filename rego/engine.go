package rego

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/plugins"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/sdk"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// DefaultQuery is the bundled entrypoint.
const DefaultQuery = "data.imagegate.review.decision"

// Options configure an Engine.
type Options struct {
	// Dir, when set, holds Rego and data files that replace the embedded
	// entrypoint (the embedded rule library stays available as
	// data.imagegate.lib unless Dir defines imagegate.lib packages itself).
	// It is watched and reloaded on change.
	Dir string
	// OPAConfig is an OPA configuration file for the SDK: remote bundles
	// (HTTP or OCI), decision logs. Empty: none (decision logs are off).
	OPAConfig string
	// Query is the decision to evaluate, e.g. data.imagegate.review.decision
	// or an OPA image_enforcer query such as data.io.k8s.image_policy.verify.
	Query string
	// V0 parses Dir's modules with Rego v0 syntax (policies written for OPA
	// before 1.0, such as the OPA image_enforcer's). The embedded library is
	// always v1.
	V0 bool
	// Data is mounted at data.imagegate (params, registries, …).
	Data map[string]any
	// PollInterval is how often Dir is checked for changes; default 2s.
	PollInterval time.Duration
	Logger       *slog.Logger
	// OnReload is told about every reload attempt of Dir (nil error: loaded).
	OnReload func(err error)
}

// Engine evaluates policy decisions. Safe for concurrent use.
type Engine struct {
	o     Options
	path  string
	opa   *sdk.OPA // only with OPAConfig (remote bundles, decision logs)
	store storage.Store
	// query is the prepared decision, evaluated directly: one per compiled
	// policy, swapped on reload. With OPAConfig it is prepared against the
	// SDK manager's compiler on first use after each compile (managed.go).
	query    atomic.Pointer[oparego.PreparedEvalQuery]
	manager  *plugins.Manager // only with OPAConfig
	compiled atomic.Uint64    // the manager's compiles so far
	prepMu   sync.Mutex

	mu       sync.Mutex
	lastErr  error  // last failed reload, nil once a reload succeeds
	loadedAt string // fingerprint of the loaded Dir

	stop chan struct{}
	done chan struct{}
}

// New compiles the policy (embedded or Dir) with imagegate's capabilities and
// starts the SDK. A policy that does not compile is an error here: the
// service does not start with a broken policy.
func New(ctx context.Context, o Options) (*Engine, error) {
	if o.Query == "" {
		o.Query = DefaultQuery
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	path, err := queryPath(o.Query)
	if err != nil {
		return nil, err
	}
	mods, docs, fp, compiler, err := load(o.Dir, o.V0)
	if err != nil {
		return nil, err
	}
	store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false))
	if err := storage.Txn(ctx, store, storage.WriteParams, func(txn storage.Transaction) error {
		return replace(ctx, store, txn, mods, mergeData(docs, o.Data))
	}); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	e := &Engine{o: o, path: path, store: store, loadedAt: fp, stop: make(chan struct{}), done: make(chan struct{})}
	if o.OPAConfig != "" {
		b, err := os.ReadFile(o.OPAConfig)
		if err != nil {
			return nil, fmt.Errorf("policy.opaConfig: %w", err)
		}
		opts := sdk.Options{Store: store, ID: "imagegate", RegoVersion: ast.RegoV1, Logger: nopLogger{}, ConsoleLogger: nopLogger{}, Config: bytes.NewReader(b),
			ManagerOpts: []func(*plugins.Manager){e.manage}}
		if e.opa, err = sdk.New(ctx, opts); err != nil {
			return nil, fmt.Errorf("policy: starting OPA: %w", err)
		}
	} else if err := e.prepare(ctx, compiler); err != nil {
		return nil, err
	}
	if o.Dir != "" {
		go e.watch()
	} else {
		close(e.done)
	}
	return e, nil
}

// Close stops the watcher and the SDK.
func (e *Engine) Close(ctx context.Context) {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	<-e.done
	if e.opa != nil {
		e.opa.Stop(ctx)
	}
}

// Status is nil while the policy serving is the one on disk; otherwise the
// error of the last reload (the previous policy keeps serving).
func (e *Engine) Status() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastErr
}

// Query returns the configured decision query.
func (e *Engine) Query() string { return e.o.Query }

var noMetrics = metrics.NoOp()

// Decide evaluates the decision for input, with f answering imagegate.facts.
// Undefined decisions are errors.
func (e *Engine) Decide(ctx context.Context, input any, f Facts) (any, error) {
	if e.manager != nil {
		return e.decideManaged(ctx, input, f)
	}
	// The input is converted here rather than by EvalInput, which first
	// round-trips it through JSON encoding (for Go types such as []string;
	// InterfaceToValue converts those itself, and round-trips only what it
	// does not know). No evaluation metrics are read: the no-op set saves a
	// map and timers per decision.
	inputAST, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, fmt.Errorf("policy: input: %w", err)
	}
	rs, err := e.query.Load().Eval(withFacts(ctx, f), oparego.EvalParsedInput(inputAST), oparego.EvalMetrics(noMetrics))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, fmt.Errorf("policy: %s is undefined for this input", e.o.Query)
	}
	return rs[0].Expressions[0].Value, nil
}

func (e *Engine) watch() {
	defer close(e.done)
	t := time.NewTicker(e.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.Reload(context.Background())
		}
	}
}

// Reload loads Dir again if it changed. A policy that does not compile is
// logged and reported, and the last good one keeps serving.
func (e *Engine) Reload(ctx context.Context) {
	if e.o.Dir == "" {
		return
	}
	fp, err := fingerprint(e.o.Dir)
	e.mu.Lock()
	same := err == nil && fp == e.loadedAt && e.lastErr == nil
	e.mu.Unlock()
	if same {
		return
	}
	mods, docs, fp, compiler, err := load(e.o.Dir, e.o.V0)
	if err == nil {
		err = storage.Txn(ctx, e.store, storage.WriteParams, func(txn storage.Transaction) error {
			return replace(ctx, e.store, txn, mods, mergeData(docs, e.o.Data))
		})
	}
	if err == nil && e.opa == nil {
		err = e.prepare(ctx, compiler)
	}
	e.mu.Lock()
	if err != nil {
		if e.lastErr == nil || e.lastErr.Error() != err.Error() {
			e.o.Logger.Error("policy reload failed; the previous policy keeps serving", slog.String("dir", e.o.Dir), slog.String("error", err.Error()))
		}
		e.lastErr = err
		e.loadedAt = fp
	} else {
		e.o.Logger.Info("policy reloaded", slog.String("dir", e.o.Dir), slog.Int("modules", len(mods)))
		e.lastErr = nil
		e.loadedAt = fp
	}
	e.mu.Unlock()
	if e.o.OnReload != nil {
		e.o.OnReload(err)
	}
}

// load reads the embedded bundle, or Dir with the embedded library, and
// compiles it with imagegate's capabilities. Errors carry file:line.
func load(dir string, v0 bool) (map[string]*ast.Module, map[string]any, string, *ast.Compiler, error) {
	return loadWith(dir, v0, true)
}

// loadWith is load; without goTwins the embedded library is compiled as
// written, in pure Rego, as `opa test` and Gatekeeper run it (tests compare
// the two).
func loadWith(dir string, v0, goTwins bool) (map[string]*ast.Module, map[string]any, string, *ast.Compiler, error) {
	mods := map[string]*ast.Module{}
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}
	addFS := func(fsys fs.FS, root, prefix string, skip func(pkg string) bool) error {
		return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			m, err := ast.ParseModuleWithOpts(prefix+p, string(b), popts)
			if err != nil {
				return err
			}
			if skip != nil && skip(m.Package.Path.String()) {
				return nil
			}
			mods[prefix+p] = m
			return nil
		})
	}
	var docs map[string]any
	fp := ""
	if dir == "" {
		if err := addFS(bundled, ".", "embedded/", nil); err != nil {
			return nil, nil, "", nil, fmt.Errorf("policy: embedded bundle: %w", err)
		}
	} else {
		var err error
		if fp, err = fingerprint(dir); err != nil {
			return nil, nil, "", nil, fmt.Errorf("policy.dir: %w", err)
		}
		version := ast.RegoV1
		if v0 {
			version = ast.RegoV0
		}
		res, err := loader.NewFileLoader().WithRegoVersion(version).WithProcessAnnotation(true).
			Filtered([]string{dir}, func(_ string, info fs.FileInfo, _ int) bool {
				return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
			})
		if err != nil {
			return nil, nil, fp, nil, fmt.Errorf("policy.dir: %w", err)
		}
		ownLib := false
		for name, m := range res.Modules {
			mods[name] = m.Parsed
			if strings.HasPrefix(m.Parsed.Package.Path.String(), "data.imagegate.lib") {
				ownLib = true
			}
		}
		if !ownLib {
			if err := addFS(bundled, "lib", "embedded/", nil); err != nil {
				return nil, nil, fp, nil, fmt.Errorf("policy: embedded library: %w", err)
			}
		}
		docs = res.Documents
	}
	// The embedded library's reference.parse runs in Go, and its checked
	// rules, and the embedded review's no_violations, try a Go fast path
	// first (native.go); a policy.dir that brings its own imagegate.lib
	// keeps its own Rego (and its review is its own, not embedded).
	if goTwins {
		for name, m := range mods {
			if strings.HasPrefix(name, "embedded/") {
				if err := fastParse(m); err != nil {
					return nil, nil, fp, nil, fmt.Errorf("policy: %s: %w", name, err)
				}
				if err := fastChecks(m); err != nil {
					return nil, nil, fp, nil, fmt.Errorf("policy: %s: %w", name, err)
				}
				if err := fastReview(m); err != nil {
					return nil, nil, fp, nil, fmt.Errorf("policy: %s: %w", name, err)
				}
			}
		}
	}
	c := ast.NewCompiler().WithCapabilities(Capabilities()).WithDefaultRegoVersion(ast.RegoV1).WithEnablePrintStatements(false)
	c.Compile(mods)
	if c.Failed() {
		return nil, nil, fp, nil, fmt.Errorf("policy does not compile: %w", c.Errors)
	}
	return mods, docs, fp, c, nil
}

// prepare folds compiler's constant rules (constants.go), compiles the
// decision query against the result (the policy load just compiled) and the
// store, and makes it the one Decide evaluates. The
// query is evaluated directly rather than through sdk.Decision: the SDK
// caches the first call's prepared query together with that call's
// evaluated-rule tracker, which every later, concurrent call then writes to.
func (e *Engine) prepare(ctx context.Context, compiler *ast.Compiler) error {
	compiler, _, err := foldConstants(ctx, compiler, e.store)
	if err != nil {
		return err
	}
	pq, err := oparego.New(
		oparego.Query(e.o.Query),
		oparego.Compiler(compiler),
		oparego.Store(e.store),
	).PrepareForEval(ctx)
	if err != nil {
		return fmt.Errorf("policy: preparing %s: %w", e.o.Query, err)
	}
	e.query.Store(&pq)
	return nil
}

// replace swaps every policy and the data document in one transaction.
func replace(ctx context.Context, store storage.Store, txn storage.Transaction, mods map[string]*ast.Module, data map[string]any) error {
	ids, err := store.ListPolicies(ctx, txn)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := store.DeletePolicy(ctx, txn, id); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(mods))
	for n := range mods {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		// The SDK re-parses stored policies as Rego v1; v0 modules are
		// stored in their v1 form, as `opa fmt --v0-v1` would write them.
		src, err := format.AstWithOpts(mods[n], format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if err := store.UpsertPolicy(ctx, txn, n, src); err != nil {
			return err
		}
	}
	return store.Write(ctx, txn, storage.ReplaceOp, storage.RootPath, data)
}

// mergeData mounts imagegate's own data at data.imagegate over the Dir's
// documents.
func mergeData(docs map[string]any, own map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range docs {
		out[k] = v
	}
	ig, _ := out["imagegate"].(map[string]any)
	merged := map[string]any{}
	for k, v := range ig {
		merged[k] = v
	}
	for k, v := range own {
		merged[k] = v
	}
	out["imagegate"] = merged
	return out
}

// fingerprint summarises Dir's files (names, sizes, mtimes) to detect edits.
func fingerprint(dir string) (string, error) {
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s|%d|%d\n", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	return b.String(), err
}

// queryPath turns "data.a.b.c" into the SDK path "a/b/c".
func queryPath(q string) (string, error) {
	r, err := ast.ParseRef(q)
	if err != nil || len(r) < 2 || !r[0].Equal(ast.DefaultRootDocument) {
		return "", fmt.Errorf("policy.query %q: want a rule reference such as data.imagegate.review.decision", q)
	}
	parts := make([]string, 0, len(r)-1)
	for _, t := range r[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			return "", fmt.Errorf("policy.query %q: only plain rule paths are supported", q)
		}
		parts = append(parts, string(s))
	}
	return strings.Join(parts, "/"), nil
}
