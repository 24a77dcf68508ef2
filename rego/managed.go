package rego

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/server"
	"github.com/open-policy-agent/opa/v1/storage"
)

// With policy.opaConfig the OPA SDK runs the plugins (bundle downloads,
// decision logs, status) and owns the compiler, but decisions are not made
// through sdk.Decision: it caches the first call's prepared query together
// with that call's evaluated-rule tracker, which every later, concurrent
// call then writes to (concurrent map writes, a crash, with a policy whose
// rules carry METADATA labels). The engine prepares the query itself against
// the manager's current compiler, again after each compile, and hands each
// decision to the decision-log plugin as sdk.Decision would.

// manage is the SDK's plugin manager option: it keeps the manager and
// drops the prepared query whenever the manager compiles a new policy
// (a bundle activated, policy.dir reloaded into the store).
func (e *Engine) manage(m *plugins.Manager) {
	e.manager = m
	m.RegisterCompilerTrigger(func(storage.Transaction) {
		e.compiled.Add(1)
		e.query.Store(nil)
	})
}

// managedQuery is the decision prepared against the manager's current
// compiler, prepared on first use after each compile.
func (e *Engine) managedQuery(ctx context.Context) (*oparego.PreparedEvalQuery, error) {
	if pq := e.query.Load(); pq != nil {
		return pq, nil
	}
	e.prepMu.Lock()
	defer e.prepMu.Unlock()
	if pq := e.query.Load(); pq != nil {
		return pq, nil
	}
	gen := e.compiled.Load()
	pq, err := oparego.New(
		oparego.Query(e.o.Query),
		oparego.Compiler(e.manager.GetCompiler()),
		oparego.Store(e.manager.Store),
		oparego.PrintHook(e.manager.PrintHook()),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: preparing %s: %w", e.o.Query, err)
	}
	// A compile that landed while preparing made this one stale: use it for
	// this decision only.
	if e.compiled.Load() == gen {
		e.query.Store(&pq)
	}
	return &pq, nil
}

// decideManaged evaluates the decision in one store transaction, as
// sdk.Decision does, and logs it when decision logs are configured.
func (e *Engine) decideManaged(ctx context.Context, input any, f Facts) (any, error) {
	m := metrics.New()
	now := time.Now().UTC()
	pq, err := e.managedQuery(ctx)
	if err != nil {
		return nil, err
	}
	store := e.manager.Store
	txn, err := store.NewTransaction(ctx, storage.TransactionParams{})
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer store.Abort(ctx, txn)
	inputAST, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, fmt.Errorf("policy: input: %w", err)
	}
	var result any
	rs, evalErr := pq.Eval(withFacts(ctx, f), oparego.EvalParsedInput(inputAST), oparego.EvalTransaction(txn), oparego.EvalMetrics(m), oparego.EvalTime(now))
	switch {
	case evalErr != nil:
		evalErr = fmt.Errorf("policy: %w", evalErr)
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		evalErr = fmt.Errorf("policy: %s is undefined for this input", e.o.Query)
	default:
		result = rs[0].Expressions[0].Value
	}
	if lp := logs.Lookup(e.manager); lp != nil {
		e.logDecision(ctx, lp, txn, now, input, inputAST, result, evalErr, m)
	}
	if evalErr != nil {
		return nil, evalErr
	}
	return result, nil
}

// logDecision hands one decision to OPA's decision-log plugin. A failure to
// log is logged, not turned into a denial.
func (e *Engine) logDecision(ctx context.Context, lp *logs.Plugin, txn storage.Transaction, now time.Time, input any, inputAST ast.Value, result any, evalErr error, m metrics.Metrics) {
	id, err := decisionID()
	if err != nil {
		e.o.Logger.Error("decision log: no decision id", slog.String("error", err.Error()))
		return
	}
	rec := &server.Info{
		Txn:        txn,
		Timestamp:  now,
		DecisionID: id,
		Path:       e.path,
		Input:      &input,
		InputAST:   inputAST,
		Error:      evalErr,
		Metrics:    m,
		Bundles:    map[string]server.BundleInfo{},
	}
	if evalErr == nil {
		rec.Results = &result
	}
	if names, err := bundle.ReadBundleNamesFromStore(ctx, e.manager.Store, txn); err == nil {
		for _, name := range names {
			if r, err := bundle.ReadBundleRevisionFromStore(ctx, e.manager.Store, txn, name); err == nil {
				rec.Bundles[name] = server.BundleInfo{Revision: r}
			}
		}
	}
	if err := lp.Log(ctx, rec); err != nil {
		e.o.Logger.Error("decision log failed", slog.String("decision_id", id), slog.String("error", err.Error()))
	}
}

// decisionID is a random (version 4) UUID, as OPA's decision ids are.
func decisionID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
