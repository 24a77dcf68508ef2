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
	renamed := 0
	for _, r := range m.Rules {
		if r.Head.Name.String() != "checked" {
			continue
		}
		for x := r; x != nil; x = x.Else {
			name := ast.VarTerm(regoCheckedName)
			name.Location = x.Head.Reference[0].Location
			x.Head.Name = ast.Var(regoCheckedName)
			x.Head.Reference = ast.Ref{name}
		}
		renamed++
	}
	if renamed == 0 {
		return fmt.Errorf("%s has no checked rule for its Go fast path", m.Package.Path)
	}
	src := fmt.Sprintf("package imagegate.lib.%s\n\nchecked(image, facts, prepared) := set() if {\n\t%s(%q, image, facts, prepared)\n} else := %s(image, facts, prepared)\n",
		rule, PassesBuiltin, rule, regoCheckedName)
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
