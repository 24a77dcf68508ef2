package registry

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// TestPullersBounded: the shared Puller (which keeps state per repository
// forever) is replaced once it has served maxRepos distinct repositories,
// and the set it counts is bounded by maxRepos.
func TestPullersBounded(t *testing.T) {
	p, err := newPullers(2)
	if err != nil {
		t.Fatal(err)
	}
	repo := func(s string) name.Repository {
		r, err := name.NewRepository("registry.example/" + s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := p.For(repo("a"))
	if p.For(repo("a")) != first || p.For(repo("b")) != first {
		t.Fatal("a second repository within the bound got another Puller")
	}
	second := p.For(repo("c"))
	if second == first {
		t.Fatal("the third repository (bound 2) got the same Puller")
	}
	if p.For(repo("c")) != second || p.For(repo("a")) != second {
		t.Error("after the swap, repositories do not share the new Puller")
	}
	if n := len(p.repos); n > 2 {
		t.Errorf("%d repositories tracked, bound 2", n)
	}
	if p.For(repo("d")) == second {
		t.Error("a third repository after the swap got the same Puller")
	}
}
