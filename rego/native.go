package rego

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
)

// PassesBuiltin answers, in Go, whether a library rule's checked(image,
// facts, prepared) is the empty set: true only when the pure-Rego rule would
// report nothing. It never produces a message. The engine runs the embedded
// library's checked for the rules in nativeRules as
//
//	checked(image, facts, prepared) := set() if {
//		imagegate.passes("<rule>", image, facts, prepared)
//	} else := <the rule as written>(image, facts, prepared)
//
// so an image that passes costs one Go call, and an image that does not (or
// a shape the Go side does not handle: any doubt answers false) is checked,
// and its messages written, by the Rego as written. False is therefore always
// safe; true must mean "the Rego reports nothing". TestPassesMatchesRego and
// FuzzPasses hold the Go side to that. Gatekeeper templates and `opa test`
// run the pure-Rego library.
const PassesBuiltin = "imagegate.passes"

// nativeRules are the library rules with a Go fast path: the ones every
// bundled review runs (pinning, registry) and the signature rule.
var nativeRules = map[string]func(image, facts, prepared ast.Value) bool{
	"pinning":   pinningPasses,
	"registry":  registryPasses,
	"signature": signaturePasses,
}

// regoCheckedName is what the rule as written is renamed to.
const regoCheckedName = "_rego_checked"

func init() {
	oparego.RegisterBuiltin4(&oparego.Function{
		Name:        PassesBuiltin,
		Description: "imagegate.passes(rule, image, facts, prepared): true only when imagegate.lib.<rule>.checked(image, facts, prepared) is empty (Go fast path; false means \"evaluate the Rego\")",
		Decl:        types.NewFunction(types.Args(types.S, types.A, types.A, types.A), types.B),
	}, passesImpl)
	oparego.RegisterBuiltin3(&oparego.Function{
		Name:        ReviewPassesBuiltin,
		Description: "imagegate.review_passes(images, plan, facts): true only when the bundled review reports no violation for these images under this plan (Go fast path; false means \"evaluate the Rego\")",
		Decl:        types.NewFunction(types.Args(types.A, types.A, types.A), types.B),
	}, reviewPassesImpl)
}

func passesImpl(_ oparego.BuiltinContext, rule, image, facts, prepared *ast.Term) (*ast.Term, error) {
	name, ok := rule.Value.(ast.String)
	if !ok {
		return nil, errors.New("imagegate.passes: the rule name must be a string")
	}
	f, ok := nativeRules[string(name)]
	if !ok {
		return nil, fmt.Errorf("imagegate.passes: no Go fast path for rule %q", name)
	}
	return ast.InternedTerm(f(image.Value, facts.Value, prepared.Value)), nil
}

// Passes is imagegate.passes for JSON-shaped Go values (tests and tools):
// whether imagegate.lib.<rule>.checked(image, facts, prepared) is certainly
// empty.
func Passes(rule string, image, facts, prepared any) (bool, error) {
	f, ok := nativeRules[rule]
	if !ok {
		return false, fmt.Errorf("no Go fast path for rule %q", rule)
	}
	var vs [3]ast.Value
	for i, x := range []any{image, facts, prepared} {
		v, err := ast.InterfaceToValue(x)
		if err != nil {
			return false, err
		}
		vs[i] = v
	}
	return f(vs[0], vs[1], vs[2]), nil
}

// fastChecks renames the checked rules of an embedded library package with a
// Go fast path and adds the checked that tries imagegate.passes first.
func fastChecks(m *ast.Module) error {
	rule, ok := strings.CutPrefix(m.Package.Path.String(), "data.imagegate.lib.")
	if !ok || nativeRules[rule] == nil {
		return nil
	}
	if renameRule(m, "checked", regoCheckedName) == 0 {
		return fmt.Errorf("%s has no checked rule for its Go fast path", m.Package.Path)
	}
	src := fmt.Sprintf("package imagegate.lib.%s\n\nchecked(image, facts, prepared) := set() if {\n\t%s(%q, image, facts, prepared)\n} else := %s(image, facts, prepared)\n",
		rule, PassesBuiltin, rule, regoCheckedName)
	return appendRules(m, src)
}

// ReviewPassesBuiltin answers, in Go, whether the bundled review reports no
// violation at all: every image passes every rule of the namespace's plan.
// The engine serves imagegate.review's no_violations as
//
//	no_violations if {
//		imagegate.review_passes(images, plan, facts)
//	} else := <no_violations as written>
//
// so a review whose images all pass costs one Go call instead of the
// violation rules' iteration over images and rules. It answers true only
// when the plan has no invalid parameters, every check of the plan is a
// rule in nativeRules, and each of those passes for each image (for the
// rules that need facts: the image's facts were read). Anything else,
// including any doubt, answers false, and the Rego as written decides and
// writes the messages. TestReviewPassesMatchesRego holds it to that.
const ReviewPassesBuiltin = "imagegate.review_passes"

// reviewPackage is the bundled review's package; reviewRule is its rule
// with a Go fast path, renamed regoReviewRule.
const (
	reviewPackage  = "data.imagegate.review"
	reviewRule     = "no_violations"
	regoReviewRule = "_rego_no_violations"
)

func reviewPassesImpl(_ oparego.BuiltinContext, images, plan, facts *ast.Term) (*ast.Term, error) {
	return ast.InternedTerm(reviewPasses(images.Value, plan.Value, facts.Value)), nil
}

// reviewPasses follows the violations rules of review.rego: none of their
// bodies can produce a message for these images, plan and facts.
func reviewPasses(images, plan, facts ast.Value) bool {
	imgs, ok := images.(*ast.Array)
	if !ok {
		return false
	}
	p, ok := plan.(ast.Object)
	if !ok {
		return false
	}
	// The invalid-parameter bodies report for every image (with facts, for
	// every image whose facts were read): the fast path needs none.
	for _, key := range []string{"invalid", "invalid_fact"} {
		if o, ok := objectAt(p, key); !ok || o.Len() != 0 {
			return false
		}
	}
	checks, ok := objectAt(p, "checks")
	if !ok {
		return false
	}
	if !allPass(imgs, checks, func(*ast.Term) (ast.Value, bool) { return ast.NullValue, true }) {
		return false
	}
	needsFacts := p.Get(ast.InternedTerm("needs_facts"))
	if needsFacts == nil {
		return false
	}
	if needsFacts.Value.Compare(ast.Boolean(true)) != 0 {
		// Only false leaves the facts bodies out; any other value is
		// truthy in Rego and left to it.
		return needsFacts.Value.Compare(ast.Boolean(false)) == 0
	}
	factChecks, ok := objectAt(p, "fact_checks")
	if !ok {
		return false
	}
	fs, ok := facts.(ast.Object)
	if !ok {
		return false
	}
	// An image whose facts were not read is a violation (unchecked): the
	// fast path needs ok exactly true, and the facts themselves.
	return allPass(imgs, factChecks, func(image *ast.Term) (ast.Value, bool) {
		e := fs.Get(image)
		if e == nil {
			return nil, false
		}
		entry, ok := e.Value.(ast.Object)
		if !ok {
			return nil, false
		}
		if okv := entry.Get(ast.InternedTerm("ok")); okv == nil || okv.Value.Compare(ast.Boolean(true)) != 0 {
			return nil, false
		}
		f := entry.Get(ast.InternedTerm("facts"))
		if f == nil {
			return nil, false
		}
		return f.Value, true
	})
}

// allPass: for every image, factsOf(image) is available and every check (rule
// name: prepared parameters) has a Go predicate that passes it.
func allPass(images *ast.Array, checks ast.Object, factsOf func(*ast.Term) (ast.Value, bool)) bool {
	preds := make([]func(image, facts, prepared ast.Value) bool, 0, checks.Len())
	prepared := make([]ast.Value, 0, checks.Len())
	ok := true
	checks.Foreach(func(k, v *ast.Term) {
		name, isString := k.Value.(ast.String)
		f := nativeRules[string(name)]
		if !isString || f == nil {
			ok = false
			return
		}
		preds = append(preds, f)
		prepared = append(prepared, v.Value)
	})
	if !ok {
		return false
	}
	for i := range images.Len() {
		image := images.Elem(i)
		f, ok := factsOf(image)
		if !ok {
			return false
		}
		for j, pred := range preds {
			if !pred(image.Value, f, prepared[j]) {
				return false
			}
		}
	}
	return true
}

// objectAt is o[key] when it is an object.
func objectAt(o ast.Object, key string) (ast.Object, bool) {
	t := o.Get(ast.InternedTerm(key))
	if t == nil {
		return nil, false
	}
	x, ok := t.Value.(ast.Object)
	return x, ok
}

// fastReview renames the bundled review's no_violations and adds the one
// that tries imagegate.review_passes first.
func fastReview(m *ast.Module) error {
	if m.Package.Path.String() != reviewPackage {
		return nil
	}
	if renameRule(m, reviewRule, regoReviewRule) == 0 {
		return fmt.Errorf("%s has no %s rule for its Go fast path", m.Package.Path, reviewRule)
	}
	src := fmt.Sprintf("package imagegate.review\n\n%s if {\n\t%s(images, plan, facts)\n} else := %s\n",
		reviewRule, ReviewPassesBuiltin, regoReviewRule)
	return appendRules(m, src)
}

// renameRule renames m's rules named from (with their else branches) to
// to, and returns how many it renamed.
func renameRule(m *ast.Module, from, to string) int {
	renamed := 0
	for _, r := range m.Rules {
		if r.Head.Name.String() != from {
			continue
		}
		for x := r; x != nil; x = x.Else {
			name := ast.VarTerm(to)
			name.Location = x.Head.Reference[0].Location
			x.Head.Name = ast.Var(to)
			x.Head.Reference = ast.Ref{name}
		}
		renamed++
	}
	return renamed
}

// appendRules parses src (a module of m's package) and adds its rules to m.
func appendRules(m *ast.Module, src string) error {
	parsed, err := ast.ParseModuleWithOpts(m.Package.Location.File, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return err
	}
	for _, r := range parsed.Rules {
		r.Module = m
		m.Rules = append(m.Rules, r)
	}
	return nil
}

// The predicates below follow rego/lib/<rule>/<rule>.rego's _checked line by
// line. Where the Rego would accept a value the predicate does not expect
// (a truthy non-boolean flag, a set where prepare writes an array), they
// answer false and the Rego decides.

// pinningPasses: pinning's _checked(image, parse(image), prepared) is empty.
func pinningPasses(image, _, prepared ast.Value) bool {
	ref, p, ok := imageAndPrepared(image, prepared)
	if !ok {
		return false
	}
	allowLatest, ok1 := flag(p, "allowLatest")
	requireDigest, ok2 := flag(p, "requireDigest")
	allowUntagged, ok3 := flag(p, "allowUntagged")
	switch {
	case !ok1 || !ok2 || !ok3:
		return false
	case !allowLatest && (ref.ImplicitTag || ref.Tag == "latest"):
		return false
	case requireDigest && ref.Digest == "":
		return false
	case !allowUntagged && ref.Digest != "" && ref.Tag == "":
		return false
	}
	if t := p.Get(ast.InternedTerm("tagPattern")); t != nil && ref.Tag != "" {
		if pattern, ok := t.Value.(ast.String); ok {
			re := anchored(string(pattern))
			if re == nil || !re.MatchString(ref.Tag) {
				return false
			}
		}
	}
	return true
}

// registryPasses: registry's _checked(image, parse(image), prepared) is
// empty, which is _allowed(ref, prepared).
func registryPasses(image, _, prepared ast.Value) bool {
	ref, p, ok := imageAndPrepared(image, prepared)
	if !ok {
		return false
	}
	if t := p.Get(ast.InternedTerm("any")); t != nil && t.Value.Compare(ast.Boolean(true)) == 0 {
		return true
	}
	if t := p.Get(ast.InternedTerm("registries")); t != nil {
		reg := ast.StringTerm(ref.Registry)
		switch c := t.Value.(type) {
		case ast.Set:
			if c.Contains(reg) {
				return true
			}
		case *ast.Array:
			for i := range c.Len() {
				if c.Elem(i).Equal(reg) {
					return true
				}
			}
		}
	}
	if t := p.Get(ast.InternedTerm("prefixes")); t != nil {
		if prefixes, ok := t.Value.(*ast.Array); ok {
			name := ref.Registry + "/" + ref.Repository
			for i := range prefixes.Len() {
				prefix, ok := prefixes.Elem(i).Value.(ast.String)
				if ok && (name == string(prefix) || strings.HasPrefix(name, string(prefix)+"/")) {
					return true
				}
			}
		}
	}
	return false
}

// signaturePasses: signature's _checked(image, facts, prepared) is empty,
// which is _failing(facts, prepared) == []. Only the one-signer count takes
// the fast path; a count above 1 (a maximum matching) is left to the Rego.
func signaturePasses(_, facts, prepared ast.Value) bool {
	f, ok := facts.(ast.Object)
	if !ok {
		return false
	}
	p, ok := prepared.(ast.Object)
	if !ok {
		return false
	}
	if n := p.Get(ast.InternedTerm("count")); n == nil || n.Value.Compare(ast.Number("1")) != 0 {
		return false
	}
	m := p.Get(ast.InternedTerm("matchers"))
	if m == nil {
		return false
	}
	matchers, ok := m.Value.(*ast.Array)
	if !ok {
		return false
	}
	signed := func(x ast.Object) bool { return anyPreparedMatch(matchers, list(x, "signatures")) }
	scope := ""
	if s := p.Get(ast.InternedTerm("scope")); s != nil {
		if str, ok := s.Value.(ast.String); ok {
			scope = string(str)
		}
	}
	switch scope {
	case "index":
		return signed(f)
	case "platforms":
		pls := platforms(f)
		if len(pls) == 0 {
			return signed(f)
		}
		for _, pl := range pls {
			if !signed(pl) {
				return false
			}
		}
		return true
	default: // "any", and what the Rego's else branches treat as "any"
		if signed(f) {
			return true
		}
		pls := platforms(f)
		for _, pl := range pls {
			if !signed(pl) {
				return false
			}
		}
		return len(pls) > 0
	}
}

// platforms is signature's _platforms: the children with an image config.
func platforms(f ast.Object) []ast.Object {
	pls := list(f, "platforms")
	var out []ast.Object
	for i := range pls.Len() {
		pl, ok := pls.Elem(i).Value.(ast.Object)
		if !ok {
			continue
		}
		if c := pl.Get(ast.InternedTerm("config")); c != nil {
			if _, ok := c.Value.(ast.Object); ok {
				out = append(out, pl)
			}
		}
	}
	return out
}

var emptyArray = ast.NewArray()

// list is the Rego _list(x, key): x[key] when it is an array, else [].
func list(x ast.Object, key string) *ast.Array {
	if t := x.Get(ast.StringTerm(key)); t != nil {
		if a, ok := t.Value.(*ast.Array); ok {
			return a
		}
	}
	return emptyArray
}

// anyPreparedMatch is signer.any_prepared_match(matchers, entries).
func anyPreparedMatch(matchers, entries *ast.Array) bool {
	for i := range matchers.Len() {
		m, ok := matchers.Elem(i).Value.(ast.Object)
		if !ok {
			continue
		}
		for j := range entries.Len() {
			e, ok := entries.Elem(j).Value.(ast.Object)
			if !ok {
				continue
			}
			if s := e.Get(ast.InternedTerm("signer")); s != nil {
				if so, ok := s.Value.(ast.Object); ok && preparedMatches(m, so) {
					return true
				}
			}
		}
	}
	return false
}

// preparedMatches is signer.prepared_matches(m, s).
func preparedMatches(m, s ast.Object) bool {
	kind := getOr(s, "kind", ast.InternedTerm(""))
	switch mk := m.Get(ast.InternedTerm("kind")); {
	case mk == nil:
		return false
	case mk.Value.Compare(ast.String("key")) == 0:
		key := m.Get(ast.InternedTerm("key"))
		sk := s.Get(ast.InternedTerm("key"))
		return kind.Value.Compare(ast.String("key")) == 0 && nonEmptyString(key) && sk != nil && sk.Value.Compare(key.Value) == 0
	case mk.Value.Compare(ast.String("keyless")) == 0:
		issuer := m.Get(ast.InternedTerm("issuer"))
		si := s.Get(ast.InternedTerm("issuer"))
		if kind.Value.Compare(ast.String("keyless")) != 0 || !nonEmptyString(issuer) || si == nil || si.Value.Compare(issuer.Value) != 0 {
			return false
		}
		if !subjectMatches(m, getOr(s, "subject", ast.InternedTerm(""))) {
			return false
		}
		want := m.Get(ast.InternedTerm("extensions"))
		if want == nil {
			return false
		}
		wantObj, ok := want.Value.(ast.Object)
		if !ok {
			return false
		}
		if wantObj.Len() == 0 {
			return true
		}
		exts, ok := getOr(s, "extensions", ast.ObjectTerm()).Value.(ast.Object)
		if !ok {
			return false
		}
		match := true
		wantObj.Foreach(func(k, v *ast.Term) {
			got := exts.Get(k)
			if got == nil {
				got = ast.NullTerm()
			}
			if got.Value.Compare(v.Value) != 0 {
				match = false
			}
		})
		return match
	}
	return false
}

// subjectMatches is signer._subject_matches(m, subject).
func subjectMatches(m ast.Object, subject *ast.Term) bool {
	if want := m.Get(ast.InternedTerm("subject")); nonEmptyString(want) && subject.Value.Compare(want.Value) == 0 {
		return true
	}
	if pattern := m.Get(ast.InternedTerm("subjectRegExp")); pattern != nil {
		ps, ok1 := pattern.Value.(ast.String)
		s, ok2 := subject.Value.(ast.String)
		if ok1 && ok2 {
			if re := compiled(string(ps)); re != nil && re.MatchString(string(s)) {
				return true
			}
		}
	}
	return false
}

// getOr is object.get(o, key, def).
func getOr(o ast.Object, key string, def *ast.Term) *ast.Term {
	if t := o.Get(ast.StringTerm(key)); t != nil {
		return t
	}
	return def
}

func nonEmptyString(t *ast.Term) bool {
	if t == nil {
		return false
	}
	s, ok := t.Value.(ast.String)
	return ok && s != ""
}

// flag reads a prepared boolean: absent is false (the Rego's `not p.flag`
// holds and `p.flag` does not); anything but a boolean is not handled.
func flag(p ast.Object, key string) (value, ok bool) {
	t := p.Get(ast.StringTerm(key))
	if t == nil {
		return false, true
	}
	b, ok := t.Value.(ast.Boolean)
	return bool(b), ok
}

// imageAndPrepared is reference.parse(image) for a valid image reference
// and prepared parameters that are an object, the shapes pinning and
// registry handle.
func imageAndPrepared(image, prepared ast.Value) (ParsedReference, ast.Object, bool) {
	s, ok := image.(ast.String)
	if !ok {
		return ParsedReference{}, nil, false
	}
	ref := parsedCache.get(string(s)).ref
	p, ok := prepared.(ast.Object)
	return ref, p, ok && ref.Valid
}

// Regular expressions come from policy parameters, so there are few of
// them; the cache is bounded anyway (past the bound they are compiled per
// use). An invalid pattern is cached as nil: Rego's regex.match fails on
// it, and so does the fast path.
var (
	regexMu    sync.RWMutex
	regexCache = map[string]*regexp.Regexp{}
)

const maxCachedRegexes = 256

func anchored(pattern string) *regexp.Regexp { return compiled("^(?:" + pattern + ")$") }

func compiled(pattern string) *regexp.Regexp {
	regexMu.RLock()
	re, ok := regexCache[pattern]
	regexMu.RUnlock()
	if ok {
		return re
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		re = nil
	}
	regexMu.Lock()
	if len(regexCache) < maxCachedRegexes {
		regexCache[pattern] = re
	}
	regexMu.Unlock()
	return re
}
