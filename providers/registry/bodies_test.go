package registry

import (
	"strings"
	"testing"
	"time"
)

func TestBodiesBounds(t *testing.T) {
	now := time.Unix(0, 0)
	s := newBodies()
	s.now = func() time.Time { return now }
	body := []byte(`{"schemaVersion":2}`)
	d := sha256Digest(body)
	s.put("r", body, "m")
	if _, _, ok := s.take("other", d); ok {
		t.Error("took a body from another repository")
	}
	if _, _, ok := s.take("r", "sha256:"+strings.Repeat("0", 64)); ok {
		t.Error("took a body under a digest that is not its content's")
	}
	if b, mt, ok := s.take("r", d); !ok || string(b) != string(body) || mt != "m" {
		t.Errorf("take = %q %q %v, want the body", b, mt, ok)
	}
	if _, _, ok := s.take("r", d); ok {
		t.Error("a body was handed over twice")
	}

	s.put("r", body, "m")
	now = now.Add(bodiesTTL)
	if _, _, ok := s.take("r", d); ok {
		t.Error("took an expired body")
	}

	for i := range bodiesMaxItems + 10 {
		s.put("r", []byte(strings.Repeat(" ", i)+"{}"), "m")
	}
	if n := s.len(); n != bodiesMaxItems {
		t.Errorf("%d bodies kept, want the bound %d", n, bodiesMaxItems)
	}
	big := []byte(strings.Repeat(" ", bodiesMaxBytes/8) + "{}")
	for range 10 {
		big = append(big, ' ')
		s.put("r", big, "m")
	}
	if s.size > bodiesMaxBytes {
		t.Errorf("%d bytes kept, want at most %d", s.size, bodiesMaxBytes)
	}
}
