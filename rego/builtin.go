package rego

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/lookup"
)

// Facts is what the engine needs to answer imagegate.facts.
type Facts = lookup.Source

// FactsBuiltin is the name of the builtin policies call for facts.
const FactsBuiltin = "imagegate.facts"

// disabled are builtins no imagegate policy may use: network access from
// policy would bypass the registry allowlist and the SSRF guard, and
// opa.runtime exposes the process environment.
var disabled = []string{"http.send", "net.lookup_ip_addr", "opa.runtime"}

type factsKey struct{}

// withFacts puts the facts source for one evaluation on the context; the
// builtin is registered once, globally, as OPA requires.
func withFacts(ctx context.Context, f Facts) context.Context {
	return context.WithValue(ctx, factsKey{}, f)
}

func init() {
	oparego.RegisterBuiltin1(&oparego.Function{
		Name:             FactsBuiltin,
		Description:      "Facts for each image of the array, fetched in parallel: {image: {\"ok\": true, \"facts\": {...}} | {\"ok\": false, \"error\": \"<code>: ...\", \"transient\": bool}}",
		Decl:             types.NewFunction(types.Args(types.NewArray(nil, types.S)), types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))),
		Nondeterministic: true,
	}, factsImpl)
	for _, name := range disabled {
		topdown.RegisterBuiltinFunc(name, func(topdown.BuiltinContext, []*ast.Term, func(*ast.Term) error) error {
			return fmt.Errorf("%s is disabled in imagegate policies", name)
		})
	}
}

func factsImpl(bctx oparego.BuiltinContext, arg *ast.Term) (*ast.Term, error) {
	src, ok := bctx.Context.Value(factsKey{}).(Facts)
	if !ok || src == nil {
		return nil, errors.New("imagegate.facts: no facts source for this evaluation")
	}
	arr, ok := arg.Value.(*ast.Array)
	if !ok {
		return nil, errors.New("imagegate.facts: want an array of image strings")
	}
	keys := make([]string, 0, arr.Len())
	var bad error
	arr.Foreach(func(t *ast.Term) {
		s, ok := t.Value.(ast.String)
		if !ok {
			bad = fmt.Errorf("imagegate.facts: %v is not a string", t)
			return
		}
		keys = append(keys, string(s))
	})
	if bad != nil {
		return nil, bad
	}
	results := lookup.FactsAll(bctx.Context, src, keys)
	out := make([][2]*ast.Term, 0, len(keys))
	for i, k := range keys {
		r := results[i]
		var v *ast.Term
		if r.Err != nil {
			items := [][2]*ast.Term{
				ast.Item(ast.InternedTerm("ok"), ast.InternedTerm(false)),
				ast.Item(ast.InternedTerm("error"), ast.StringTerm(r.Err.Error())),
			}
			if !facts.CodeOf(r.Err).Definitive() {
				items = append(items, ast.Item(ast.InternedTerm("transient"), ast.InternedTerm(true)))
			}
			v = ast.ObjectTerm(items...)
		} else {
			var fv ast.Value
			var err error
			if c, ok := r.Parts(); ok {
				fv, err = keyValue(k, c)
			} else {
				fv, err = toValue(r.Facts())
			}
			if err != nil {
				return nil, err
			}
			v = ast.ObjectTerm(
				ast.Item(ast.InternedTerm("ok"), ast.InternedTerm(true)),
				ast.Item(ast.InternedTerm("facts"), ast.NewTerm(fv)),
			)
		}
		out = append(out, ast.Item(ast.StringTerm(k), v))
	}
	return ast.ObjectTerm(out...), nil
}

// baseValues holds the Rego value of each digest's facts (lookup's shared
// base value, without per-key fields), converted once and dropped with the
// base, together with the values of the keys composed from it: a warm review
// of a key seen before builds nothing.
var baseValues facts.Memo[*baseValue]

type baseValue struct {
	obj ast.Object
	mu  sync.Mutex
	// keys are the composed values of the keys naming this digest, at most
	// maxKeyValues (past that they are composed per call). An entry is used
	// only while the key's reference and tag digest are the same.
	keys map[string]keyEntry
}

type keyEntry struct {
	ref       facts.Reference
	tagDigest string
	value     ast.Object
}

const maxKeyValues = 16

// keyValue is the Rego value of image's facts answered from the caches:
// its base's value, converted once per digest, with the key's own fields.
// Values are shared between evaluations, which never modify them.
func keyValue(image string, c *lookup.Cached) (ast.Value, error) {
	base := c.Base
	if base.Image != "" || base.TagDigest != "" {
		return toValue(c.Compose(image))
	}
	bv, ok := baseValues.Get(base)
	if !ok {
		v, err := toValue(base)
		if err != nil {
			return nil, err
		}
		obj, ok := v.(ast.Object)
		if !ok {
			return v, nil
		}
		bv = &baseValue{obj: obj}
		baseValues.Put(base, bv)
	}
	bv.mu.Lock()
	e, ok := bv.keys[image]
	bv.mu.Unlock()
	if ok && e.ref == c.Reference && e.tagDigest == c.TagDigest {
		return e.value, nil
	}
	out := ast.NewObject()
	bv.obj.Foreach(func(k, v *ast.Term) {
		switch k.Value {
		case ast.String("image"), ast.String("reference"), ast.String("tagDigest"):
		default:
			out.Insert(k, v)
		}
	})
	out.Insert(ast.InternedTerm("image"), ast.StringTerm(image))
	out.Insert(ast.InternedTerm("reference"), ast.ObjectTerm(
		ast.Item(ast.InternedTerm("registry"), ast.StringTerm(c.Reference.Registry)),
		ast.Item(ast.InternedTerm("repository"), ast.StringTerm(c.Reference.Repository)),
		ast.Item(ast.InternedTerm("tag"), ast.StringTerm(c.Reference.Tag)),
		ast.Item(ast.InternedTerm("digest"), ast.StringTerm(c.Reference.Digest)),
	))
	if c.TagDigest != "" {
		out.Insert(ast.InternedTerm("tagDigest"), ast.StringTerm(c.TagDigest))
	}
	bv.mu.Lock()
	if bv.keys == nil {
		bv.keys = map[string]keyEntry{}
	}
	if _, had := bv.keys[image]; had || len(bv.keys) < maxKeyValues {
		bv.keys[image] = keyEntry{ref: c.Reference, tagDigest: c.TagDigest, value: out}
	}
	bv.mu.Unlock()
	return out, nil
}

// toValue converts through JSON, as policy input is.
func toValue(f *facts.Facts) (ast.Value, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return ast.ValueFromReader(bytes.NewReader(b))
}

// Capabilities are OPA's for this version without the disabled builtins.
func Capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	drop := map[string]bool{}
	for _, n := range disabled {
		drop[n] = true
	}
	kept := caps.Builtins[:0:0]
	for _, b := range caps.Builtins {
		if !drop[b.Name] {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	return caps
}
