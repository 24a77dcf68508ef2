package facts

import (
	"runtime"
	"sync"
	"weak"
)

// Memo keeps one value derived from each *Facts (its JSON encoding, its Rego
// value) for as long as that Facts is alive, and no longer: an entry is
// dropped when the garbage collector frees its Facts, so a Memo never holds
// more than the caches that hand Facts out. Facts from providers/lookup are
// shared and never modified, and a key's facts keep their pointer while
// nothing about them changes, so a derived value stays correct for the
// pointer's life. Safe for concurrent use.
type Memo[V any] struct {
	mu sync.RWMutex
	m  map[weak.Pointer[Facts]]V
}

// Get returns the value derived from f, if there is one.
func (c *Memo[V]) Get(f *Facts) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[weak.Make(f)]
	c.mu.RUnlock()
	return v, ok
}

// Put records v as derived from f.
func (c *Memo[V]) Put(f *Facts, v V) {
	wp := weak.Make(f)
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[weak.Pointer[Facts]]V)
	}
	_, had := c.m[wp]
	c.m[wp] = v
	c.mu.Unlock()
	if !had {
		runtime.AddCleanup(f, c.drop, wp)
	}
}

// Len is the number of live entries.
func (c *Memo[V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

func (c *Memo[V]) drop(wp weak.Pointer[Facts]) {
	c.mu.Lock()
	delete(c.m, wp)
	c.mu.Unlock()
}
