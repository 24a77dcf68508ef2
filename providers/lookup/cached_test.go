package lookup

import (
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

// TestCached: CachedBase answers exactly what Facts answers, as the same
// pointer, only while every cache it needs is fresh; it never does I/O. A
// moved tag gives new facts (a new pointer) once the tag cache expires.
func TestCached(t *testing.T) {
	reg := registrytest.New(t)
	old := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created, Labels: map[string]string{"v": "1"}})
	clock := newFakeClock()
	s := newService(t, reg, Options{Now: clock.Now, TagTTL: 30 * time.Second})
	tagKey := reg.Host + "/team/app:v1"
	digestKey := reg.Host + "/team/app@" + old.String()
	bothKey := reg.Host + "/team/app:v1@" + old.String()
	keys := []string{tagKey, digestKey, bothKey}

	for _, k := range keys {
		if _, ok := cached(s, k); ok {
			t.Errorf("Cached(%q) before any lookup = ok", k)
		}
	}
	want := map[string]any{}
	for _, k := range keys {
		f, err := s.Facts(t.Context(), k)
		if err != nil {
			t.Fatalf("Facts(%q): %v", k, err)
		}
		want[k] = f
	}
	reg.ResetCounts()
	for _, k := range keys {
		f, ok := cached(s, k)
		if !ok || any(f) != want[k] {
			t.Errorf("Cached(%q) = %p, %v; want Facts' pointer %p", k, f, ok, want[k])
		}
		again, err := s.Facts(t.Context(), k)
		if err != nil || any(again) != want[k] {
			t.Errorf("Facts(%q) again = %p, %v; want the same pointer %p", k, again, err, want[k])
		}
	}
	if f, _ := cached(s, bothKey); f.TagDigest != old.String() || f.Image != bothKey {
		t.Errorf("Cached(%q) = image %q tagDigest %q, want %q, %s", bothKey, f.Image, f.TagDigest, bothKey, old)
	}
	checkCounts(t, reg, "Cached and warm Facts", map[string]int{})

	moved := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created.Add(time.Hour), Labels: map[string]string{"v": "2"}})
	clock.Advance(31 * time.Second)
	reg.ResetCounts()
	for _, k := range []string{tagKey, bothKey} {
		if _, ok := cached(s, k); ok {
			t.Errorf("Cached(%q) after the tag TTL = ok, want a miss", k)
		}
	}
	if f, ok := cached(s, digestKey); !ok || any(f) != want[digestKey] {
		t.Errorf("Cached(%q) after the tag TTL = %v; a pinned digest needs no tag", digestKey, ok)
	}
	checkCounts(t, reg, "Cached after the tag TTL", map[string]int{})

	for _, k := range []string{tagKey, bothKey} {
		f, err := s.Facts(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := cached(s, k)
		if !ok || c != f {
			t.Errorf("Cached(%q) after the move = %p, %v; want Facts' %p", k, c, ok, f)
		}
		if any(f) == want[k] {
			t.Errorf("Facts(%q) after the tag moved is the old pointer", k)
		}
	}
	if f, _ := cached(s, tagKey); f.Digest != moved.String() || f.Config.Labels["v"] != "2" {
		t.Errorf("Cached(%q) after the move = digest %s, want %s", tagKey, f.Digest, moved)
	}
	if f, _ := cached(s, bothKey); f.Digest != old.String() || f.TagDigest != moved.String() {
		t.Errorf("Cached(%q) after the move = digest %s tagDigest %s, want %s and %s", bothKey, f.Digest, f.TagDigest, old, moved)
	}
	if _, ok := cached(s, "other.example/team/app:v1"); ok {
		t.Error("Cached of a registry not allowed = ok")
	}
}

// cached is CachedBase without the base.
func cached(s *Service, key string) (*facts.Facts, bool) {
	f, _, ok := s.CachedBase(key)
	return f, ok
}
