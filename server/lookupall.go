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
type Result = lookup.Result

// LookupAll looks up every key (lookup.FactsAll): warm keys from memory,
// the others in parallel, one result per key in order. The server and
// `imagegate facts` share this path.
func LookupAll(ctx context.Context, l Lookup, keys []string) []Result {
	return lookup.FactsAll(ctx, l, keys)
}
