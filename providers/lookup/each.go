package lookup

import (
	"context"
	"sync"
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
