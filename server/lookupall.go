package server

import (
	"context"
	"sync"

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
	Err   error
}

// maxParallelKeys bounds the goroutines one request starts; the lookup
// service bounds cold registry fetches across all requests.
const maxParallelKeys = 32

// LookupAll looks up every key in parallel, each distinct key once, and
// returns one result per key in order (a repeated key repeats its result).
// Keys still running when ctx ends are transient failures. The server and
// `imagegate facts` share this path.
func LookupAll(ctx context.Context, l Lookup, keys []string) []Result {
	return each(ctx, keys, func(ctx context.Context, key string) Result {
		f, err := l.Facts(ctx, key)
		return Result{Key: key, Facts: f, Err: err}
	})
}

// each runs fn once per distinct key, in parallel, and fans results out in
// key order.
func each[T any](ctx context.Context, keys []string, fn func(context.Context, string) T) []T {
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
