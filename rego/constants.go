package rego

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// ConstantAnnotation is the METADATA custom key that marks a rule as
// constant: it depends on policy and data only, never on input, time or the
// network, so the engine evaluates it once per policy load and decisions use
// that value instead of evaluating it again for every request. The bundled
// ImageReview policy marks the merged, validated rule parameters so.
//
//	# METADATA
//	# custom:
//	#   constant: true
//	plans := ...
const ConstantAnnotation = "constant"

// constantRule is one rule path marked constant.
type constantRule struct {
	path ast.Ref
	loc  *ast.Location
}

// constantRules are the rule paths compiler's modules mark constant, in a
// stable order. A marked rule that is a function, has a non-ground path, or
// depends (through any rule or function it uses) on input or on a
// nondeterministic builtin is an error naming both.
func constantRules(compiler *ast.Compiler) ([]constantRule, error) {
	as := compiler.GetAnnotationSet()
	if as == nil {
		return nil, nil
	}
	var out []constantRule
	seen := map[string]bool{}
	for _, ar := range as.Flatten() {
		if ar.Annotations == nil || ar.Annotations.Custom[ConstantAnnotation] != true {
			continue
		}
		rule, ok := ar.GetRule(), ar.GetRule() != nil
		if !ok {
			return nil, fmt.Errorf("%s: custom %q marks a %s, not a rule", ar.Location, ConstantAnnotation, ar.Annotations.Scope)
		}
		full := rule.Ref()
		if !full.IsGround() || len(rule.Head.Args) > 0 {
			return nil, fmt.Errorf("%s: %v is marked %s but is not a plain rule (a function, or a rule with variables in its name)", rule.Location, full, ConstantAnnotation)
		}
		if seen[full.String()] {
			continue
		}
		seen[full.String()] = true
		for _, r := range compiler.GetRulesExact(full) {
			if err := constantDeps(compiler, r, full); err != nil {
				return nil, err
			}
		}
		out = append(out, constantRule{path: full, loc: rule.Location})
	}
	slices.SortFunc(out, func(a, b constantRule) int { return strings.Compare(a.path.String(), b.path.String()) })
	return out, nil
}

// constantDeps checks that rule, and every rule and function it refers to
// (in any body, head or else branch, through any chain of references),
// reads neither input nor a nondeterministic builtin.
func constantDeps(compiler *ast.Compiler, rule *ast.Rule, marked ast.Ref) error {
	visited := map[*ast.Rule]bool{}
	var visit func(r *ast.Rule) error
	visit = func(r *ast.Rule) error {
		if visited[r] {
			return nil
		}
		visited[r] = true
		var bad error
		var deps []*ast.Rule
		check := func(x any) {
			ast.WalkRefs(x, func(ref ast.Ref) bool {
				switch {
				case bad != nil:
				case ref.HasPrefix(ast.InputRootRef):
					bad = fmt.Errorf("%s: %v is marked %s but depends on input (%v in %v)", rule.Location, marked, ConstantAnnotation, ref, r.Ref())
				case ref.HasPrefix(ast.DefaultRootRef):
					deps = append(deps, compiler.GetRulesDynamicWithOpts(ref, ast.RulesOptions{IncludeHiddenModules: true})...)
				}
				return false
			})
			ast.WalkExprs(x, func(e *ast.Expr) bool {
				if bad != nil || !e.IsCall() {
					return false
				}
				name := e.Operator().String()
				if b, ok := ast.BuiltinMap[name]; ok && b.IsNondeterministic() {
					bad = fmt.Errorf("%s: %v is marked %s but calls %s, whose result changes between evaluations (in %v)", rule.Location, marked, ConstantAnnotation, name, r.Ref())
				}
				return false
			})
		}
		for x := r; x != nil; x = x.Else {
			check(x.Head)
			check(x.Body)
		}
		if bad != nil {
			return bad
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		return nil
	}
	return visit(rule)
}

// foldConstants evaluates every constant rule of compiler against store,
// once, and returns a compiler for the same modules in which each of those
// rules is replaced by its value (so decisions do not evaluate them again),
// with the folded paths. A constant rule that is undefined is left as it
// is. With no constant rules, compiler is returned unchanged.
func foldConstants(ctx context.Context, compiler *ast.Compiler, store storage.Store) (*ast.Compiler, []string, error) {
	rules, err := constantRules(compiler)
	if err != nil || len(rules) == 0 {
		return compiler, nil, err
	}
	values := map[string]*ast.Term{}
	var folded []string
	for _, cr := range rules {
		rs, err := oparego.New(
			oparego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(cr.path)))),
			oparego.Compiler(compiler),
			oparego.Store(store),
		).Eval(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: evaluating constant %v: %w", cr.loc, cr.path, err)
		}
		if len(rs) == 0 || len(rs[0].Expressions) == 0 {
			continue
		}
		v, err := ast.InterfaceToValue(rs[0].Expressions[0].Value)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: constant %v: %w", cr.loc, cr.path, err)
		}
		values[cr.path.String()] = ast.NewTerm(v)
		folded = append(folded, cr.path.String())
	}
	if len(folded) == 0 {
		return compiler, nil, nil
	}
	mods := make(map[string]*ast.Module, len(compiler.Modules))
	for name, m := range compiler.Modules {
		if !definesAny(m, values) {
			mods[name] = m
			continue
		}
		cp := m.Copy()
		kept := cp.Rules[:0]
		done := map[string]bool{}
		for _, r := range cp.Rules {
			full := r.Ref().String()
			v, ok := values[full]
			if !ok {
				kept = append(kept, r)
				continue
			}
			if done[full] {
				continue
			}
			done[full] = true
			kept = append(kept, asConstant(r, v))
		}
		cp.Rules = kept
		mods[name] = cp
	}
	c := ast.NewCompiler().WithCapabilities(Capabilities()).WithDefaultRegoVersion(ast.RegoV1).WithEnablePrintStatements(false)
	c.Compile(mods)
	if c.Failed() {
		return nil, nil, fmt.Errorf("policy: folding constants %s: %w", strings.Join(folded, ", "), c.Errors)
	}
	return c, folded, nil
}

func definesAny(m *ast.Module, values map[string]*ast.Term) bool {
	for _, r := range m.Rules {
		if _, ok := values[r.Ref().String()]; ok {
			return true
		}
	}
	return false
}

// constantRule2 is r rewritten as `<r's name> := v`, at r's location.
func asConstant(r *ast.Rule, v *ast.Term) *ast.Rule {
	head := &ast.Head{
		Name:      r.Head.Name,
		Reference: r.Head.Reference,
		Value:     v,
		Assign:    true,
		Location:  r.Head.Location,
	}
	return &ast.Rule{
		Head:     head,
		Body:     ast.NewBody(ast.NewExpr(ast.BooleanTerm(true))),
		Module:   r.Module,
		Location: r.Location,
	}
}
