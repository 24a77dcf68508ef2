package lookup

import (
	"context"
	"sync"

	"github.com/imagegate/imagegate/providers/facts"
)

// maxParallelKeys bounds the goroutines one call of Each starts; the Service
// bounds cold registry fetches across all callers.
const maxParallelKeys = 32

// Each runs fn once per distinct key, in parallel, and returns the results in
// key order (a repeated key repeats its result). Requests may repeat keys
// (Gatekeeper does not deduplicate); each is looked up once.
func Each[T any](ctx context.Context, keys []string, fn func(context.Context, string) T) []T {
	index := make(map[string]int, len(keys))
	var distinct []string
	for _, k := range keys {
		if _, ok := index[k]; !ok {
			index[k] = len(distinct)
			distinct = append(distinct, k)
		}
	}
	got := make([]T, len(distinct))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelKeys)
	for i, k := range distinct {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			got[i] = fn(ctx, k)
		}()
	}
	wg.Wait()
	out := make([]T, len(keys))
	for i, k := range keys {
		out[i] = got[index[k]]
	}
	return out
}

// EachCached is Each for sources that can answer some keys from memory:
// cached is asked first, for every key, on the caller's goroutine; only the
// keys it cannot answer go through Each. A warm request starts no goroutine.
func EachCached[T any](ctx context.Context, keys []string, cached func(string) (T, bool), fn func(context.Context, string) T) []T {
	out := make([]T, len(keys))
	var miss []int
	for i, k := range keys {
		v, ok := cached(k)
		if !ok {
			miss = append(miss, i)
			continue
		}
		out[i] = v
	}
	if len(miss) == 0 {
		return out
	}
	missKeys := make([]string, len(miss))
	for j, i := range miss {
		missKeys[j] = keys[i]
	}
	for j, v := range Each(ctx, missKeys, fn) {
		out[miss[j]] = v
	}
	return out
}

// Source is a facts source: the Service, or a stand-in in tests.
type Source interface {
	Facts(ctx context.Context, key string) (*facts.Facts, error)
}

// Cacher is a Source that can answer warm keys from memory, in parts
// (Service.CachedParts).
type Cacher interface {
	CachedParts(key string) (Cached, bool)
}

// Result is the outcome of a facts lookup for one key: Err, or the facts,
// either fetched whole or, for a key answered from the caches, in parts
// (Parts), composed only when asked for (Facts).
type Result struct {
	Key    string
	Err    error
	full   *facts.Facts
	cached Cached
}

// FetchedResult is the Result of a lookup that fetched f (or failed with
// err); CachedResult of one answered from the caches in parts. Sources other
// than the Service build theirs with these.
func FetchedResult(key string, f *facts.Facts, err error) Result {
	return Result{Key: key, full: f, Err: err}
}

// CachedResult: see FetchedResult.
func CachedResult(key string, c Cached) Result { return Result{Key: key, cached: c} }

// Facts returns the key's facts (nil with Err).
func (r *Result) Facts() *facts.Facts {
	if r.full == nil && r.cached.Base != nil {
		return r.cached.Compose(r.Key)
	}
	return r.full
}

// Parts returns the key's facts in parts when it was answered from the
// caches: the digest's shared facts (what derived encodings are kept for)
// and the key's own fields. ok is false for fetched facts and errors.
func (r *Result) Parts() (c *Cached, ok bool) {
	return &r.cached, r.cached.Base != nil
}

// FactsAll looks up every key, warm keys from memory when src is a Cacher
// and the rest in parallel, each distinct key once, and returns one result
// per key in order. Keys still running when ctx ends are transient
// failures. The facts endpoint, `imagegate facts` and the policy builtin
// share it.
func FactsAll(ctx context.Context, src Source, keys []string) []Result {
	fetch := func(ctx context.Context, key string) Result {
		f, err := src.Facts(ctx, key)
		return FetchedResult(key, f, err)
	}
	if c, ok := src.(Cacher); ok {
		return EachCached(ctx, keys, func(key string) (Result, bool) {
			cached, ok := c.CachedParts(key)
			return CachedResult(key, cached), ok
		}, fetch)
	}
	return Each(ctx, keys, fetch)
}
