package server

import (
	"context"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/lookup"
)

// Lookup is what the handlers need from the facts service.
type Lookup interface {
	Facts(ctx context.Context, key string) (*facts.Facts, error)
	Digest(ctx context.Context, key string) (lookup.Pinned, error)
}

// Result is the outcome for one key.
type Result struct {
	Key   string
	Facts *facts.Facts
	// Base, when known, is the digest's facts Facts was composed from
	// (lookup.Service.CachedBase): what encodings are kept for.
	Base *facts.Facts
	Err  error
}

// LookupAll looks up every key in parallel, each distinct key once, and
// returns one result per key in order (a repeated key repeats its result).
// Keys still running when ctx ends are transient failures. The server and
// `imagegate facts` share this path.
func LookupAll(ctx context.Context, l Lookup, keys []string) []Result {
	fetch := func(ctx context.Context, key string) Result {
		f, err := l.Facts(ctx, key)
		return Result{Key: key, Facts: f, Err: err}
	}
	if c, ok := l.(lookup.Cacher); ok {
		return lookup.EachCached(ctx, keys, func(key string) (Result, bool) {
			f, base, ok := c.CachedBase(key)
			return Result{Key: key, Facts: f, Base: base}, ok
		}, fetch)
	}
	return lookup.Each(ctx, keys, fetch)
}
