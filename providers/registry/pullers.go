package registry

import (
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// DefaultMaxRepositories is Options.MaxRepositories' default.
const DefaultMaxRepositories = 10000

// pullers hands out the shared go-containerregistry Puller, and replaces it
// after it has served maxRepos distinct repositories. A Puller keeps one
// reader per repository (HTTP client, auth transport, token) for its whole
// life, so a long-running server that sees ever new repositories would grow
// without bound. A replaced Puller is dropped once the fetches using it end;
// the next fetch from a repository it knew authenticates again (one ping or
// token round trip, on cold lookups only: warm keys come from the caches).
type pullers struct {
	opts     []remote.Option
	maxRepos int

	mu    sync.Mutex
	cur   *remote.Puller
	repos map[string]struct{}
}

func newPullers(maxRepos int, opts ...remote.Option) (*pullers, error) {
	p := &pullers{opts: opts, maxRepos: maxRepos}
	if err := p.renew(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pullers) renew() error {
	cur, err := remote.NewPuller(p.opts...)
	if err != nil {
		return err
	}
	p.cur, p.repos = cur, make(map[string]struct{})
	return nil
}

// For returns the Puller to use for repo.
func (p *pullers) For(repo name.Repository) *remote.Puller {
	key := repo.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.repos[key]; !ok {
		if len(p.repos) >= p.maxRepos {
			// NewPuller fails only on invalid options, which the first
			// call already accepted; keep the old Puller if it ever does.
			_ = p.renew()
		}
		p.repos[key] = struct{}{}
	}
	return p.cur
}
