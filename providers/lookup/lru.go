package lookup

import (
	"sync"
	"time"
)

// lru is a bounded least-recently-used map whose entries also expire. Each
// entry carries its own deadline, so definitive negatives and positives can
// live for different times in one structure. It starts no goroutines: expired
// entries are dropped when touched or when evicted by size.
//
// Each entry is one allocation (key, value, deadline and the recency links
// together) besides the map's slot: with 100,000 entries per cache, a
// container/list element and a boxed entry would cost ~50 bytes more each.
type lru[V any] struct {
	mu    sync.Mutex
	max   int
	n     int
	items map[string]*lruEntry[V]
	// ring is the recency list's sentinel: ring.next is the most recently
	// used entry, ring.prev the least.
	ring lruEntry[V]
	now  func() time.Time
	// epoch is when the cache was made; deadlines are kept as offsets from
	// it (8 bytes, not a 24-byte time.Time), compared as time.Time compares:
	// on the monotonic clock when now() has one.
	epoch time.Time
}

type lruEntry[V any] struct {
	prev, next *lruEntry[V]
	key        string
	val        V
	expires    time.Duration // since epoch
}

func newLRU[V any](max int, now func() time.Time) *lru[V] {
	c := &lru[V]{max: max, items: make(map[string]*lruEntry[V]), now: now, epoch: now()}
	c.ring.next, c.ring.prev = &c.ring, &c.ring
	return c
}

func (c *lru[V]) unlink(e *lruEntry[V]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *lru[V]) pushFront(e *lruEntry[V]) {
	e.prev, e.next = &c.ring, c.ring.next
	c.ring.next.prev = e
	c.ring.next = e
}

func (c *lru[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.found(c.items[key])
}

// getBytes is get for a key built in a buffer: the lookup does not
// allocate a string.
func (c *lru[V]) getBytes(key []byte) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.found(c.items[string(key)])
}

// found returns e's value if e is present and fresh, dropping it if expired,
// and marks it most recently used. c.mu is held.
func (c *lru[V]) found(e *lruEntry[V]) (V, bool) {
	var zero V
	if e == nil {
		return zero, false
	}
	if c.now().Sub(c.epoch) >= e.expires {
		c.unlink(e)
		delete(c.items, e.key)
		c.n--
		return zero, false
	}
	c.unlink(e)
	c.pushFront(e)
	return e.val, true
}

func (c *lru[V]) add(key string, val V, ttl time.Duration) {
	if ttl <= 0 || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now().Sub(c.epoch)
	exp := now + ttl
	if exp < now {
		exp = 1<<63 - 1 // overflow: never expires
	}
	if e, ok := c.items[key]; ok {
		e.val, e.expires = val, exp
		c.unlink(e)
		c.pushFront(e)
		return
	}
	e := &lruEntry[V]{key: key, val: val, expires: exp}
	c.items[key] = e
	c.pushFront(e)
	c.n++
	for c.n > c.max {
		old := c.ring.prev
		c.unlink(old)
		delete(c.items, old.key)
		c.n--
	}
}

func (c *lru[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
