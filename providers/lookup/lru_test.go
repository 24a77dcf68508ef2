package lookup

import (
	"slices"
	"sort"
	"testing"
	"time"
)

func TestLRU(t *testing.T) {
	type op struct {
		add     string        // key to add (value = key)
		ttl     time.Duration // for add; 0 takes 1h
		get     string        // key to get
		want    bool          // get: found
		advance time.Duration
	}
	for _, tc := range []struct {
		desc     string
		max      int
		ops      []op
		wantKeys []string // present at the end, by get
		wantLen  int
	}{
		{
			desc:     "evicts the least recently added",
			max:      2,
			ops:      []op{{add: "a"}, {add: "b"}, {add: "c"}},
			wantKeys: []string{"b", "c"}, wantLen: 2,
		},
		{
			desc:     "get refreshes recency",
			max:      2,
			ops:      []op{{add: "a"}, {add: "b"}, {get: "a", want: true}, {add: "c"}, {get: "b", want: false}},
			wantKeys: []string{"a", "c"}, wantLen: 2,
		},
		{
			desc:     "re-adding refreshes recency without growing",
			max:      2,
			ops:      []op{{add: "a"}, {add: "b"}, {add: "a"}, {add: "c"}},
			wantKeys: []string{"a", "c"}, wantLen: 2,
		},
		{
			desc: "expires at the TTL",
			max:  10,
			ops: []op{
				{add: "a", ttl: 10 * time.Second}, {add: "b", ttl: 20 * time.Second},
				{advance: 9 * time.Second}, {get: "a", want: true},
				{advance: time.Second}, {get: "a", want: false}, {get: "b", want: true},
			},
			wantKeys: []string{"b"}, wantLen: 1,
		},
		{
			desc: "re-adding extends the TTL",
			max:  10,
			ops: []op{
				{add: "a", ttl: 10 * time.Second}, {advance: 9 * time.Second},
				{add: "a", ttl: 10 * time.Second}, {advance: 9 * time.Second}, {get: "a", want: true},
			},
			wantKeys: []string{"a"}, wantLen: 1,
		},
		{
			desc:    "non-positive TTL is not stored",
			max:     10,
			ops:     []op{{add: "a", ttl: -1}, {get: "a", want: false}},
			wantLen: 0,
		},
		{
			desc:    "zero size stores nothing",
			max:     0,
			ops:     []op{{add: "a"}, {get: "a", want: false}},
			wantLen: 0,
		},
		{
			desc:     "size one",
			max:      1,
			ops:      []op{{add: "a"}, {add: "b"}, {get: "a", want: false}, {get: "b", want: true}},
			wantKeys: []string{"b"}, wantLen: 1,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			clock := newFakeClock()
			c := newLRU[string](tc.max, clock.Now)
			for i, o := range tc.ops {
				switch {
				case o.add != "":
					ttl := o.ttl
					if ttl == 0 {
						ttl = time.Hour
					}
					c.add(o.add, o.add, ttl)
				case o.get != "":
					v, ok := c.get(o.get)
					if ok != o.want || (ok && v != o.get) {
						t.Errorf("op %d: get(%q) = %q, %v; want found %v", i, o.get, v, ok, o.want)
					}
				default:
					clock.Advance(o.advance)
				}
			}
			if got := c.len(); got != tc.wantLen {
				t.Errorf("len() = %d, want %d", got, tc.wantLen)
			}
			got := lruKeys(c)
			sort.Strings(got)
			want := slices.Clone(tc.wantKeys)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Errorf("keys = %v, want %v", got, want)
			}
		})
	}
}
