package lookup

import (
	"reflect"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

// TestCached: CachedBase answers exactly what Facts answers, only while
// every cache it needs is fresh; it never does I/O. Its base (the digest's
// facts, which encodings are kept for) is the same pointer while nothing
// changes. A moved tag gives new facts (a new base) once the tag cache
// expires.
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
	want := map[string]*facts.Facts{}
	bases := map[string]*facts.Facts{}
	for _, k := range keys {
		f, err := s.Facts(t.Context(), k)
		if err != nil {
			t.Fatalf("Facts(%q): %v", k, err)
		}
		want[k] = f
	}
	reg.ResetCounts()
	for _, k := range keys {
		f, base, ok := s.CachedBase(k)
		if !ok || !reflect.DeepEqual(f, want[k]) {
			t.Errorf("CachedBase(%q) = %+v, %v; want Facts' %+v", k, f, ok, want[k])
		}
		if ok && (base.Image != "" || base.TagDigest != "" || base.Reference != (facts.Reference{}) || base.Digest != f.Digest || base.Config != f.Config) {
			t.Errorf("CachedBase(%q) base = %+v, want f's digest-level fields without the per-key ones", k, base)
		}
		bases[k] = base
		again, err := s.Facts(t.Context(), k)
		if err != nil || !reflect.DeepEqual(again, want[k]) {
			t.Errorf("Facts(%q) again = %+v, %v; want %+v", k, again, err, want[k])
		}
		if _, b2, _ := s.CachedBase(k); b2 != base {
			t.Errorf("CachedBase(%q) again: base %p, want the same pointer %p", k, b2, base)
		}
	}
	if bases[digestKey] != bases[bothKey] || bases[tagKey] != bases[bothKey] {
		t.Errorf("bases of keys naming one digest differ: %p %p %p", bases[tagKey], bases[digestKey], bases[bothKey])
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
	if f, base, ok := s.CachedBase(digestKey); !ok || !reflect.DeepEqual(f, want[digestKey]) || base != bases[digestKey] {
		t.Errorf("Cached(%q) after the tag TTL = %v; a pinned digest needs no tag", digestKey, ok)
	}
	checkCounts(t, reg, "Cached after the tag TTL", map[string]int{})

	for _, k := range []string{tagKey, bothKey} {
		f, err := s.Facts(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		c, base, ok := s.CachedBase(k)
		if !ok || !reflect.DeepEqual(c, f) {
			t.Errorf("Cached(%q) after the move = %+v, %v; want Facts' %+v", k, c, ok, f)
		}
		if k == tagKey && base == bases[k] {
			t.Errorf("CachedBase(%q) after the tag moved is the old base", k)
		}
		if k == bothKey && base != bases[k] {
			t.Errorf("CachedBase(%q) after the tag moved: base %p, want the pinned digest's %p", k, base, bases[k])
		}
	}
	if f, _ := cached(s, tagKey); f.Digest != moved.String() || f.Config.Labels.Get("v") != "2" {
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
