package registry

import (
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// DefaultMaxRepositories is Options.MaxRepositories' default.
const DefaultMaxRepositories = 1024

// maxRegistries bounds the registries pullers keeps a Puller for.
const maxRegistries = 1024

// pullers hands out go-containerregistry Pullers, one per registry, and
// starts afresh once they have served maxRepos distinct repositories. A
// Puller keeps one reader per repository (HTTP client, auth transport,
// token) for its whole life, so a long-running server that sees ever new
// repositories would grow without bound. A replaced Puller is dropped once
// the fetches using it end; the next fetch from a repository it knew
// authenticates again (a token round trip for bearer registries; the ping
// is remembered, see pingCache).
//
// One Puller per registry lets a registry whose auth challenge changed
// start afresh (renew) without the others losing their tokens.
type pullers struct {
	opts     []remote.Option
	maxRepos int

	mu    sync.Mutex
	regs  map[string]*regPuller // by scheme://host
	repos map[string]struct{}
}

type regPuller struct {
	p *remote.Puller
}

func newPullers(maxRepos int, opts ...remote.Option) (*pullers, error) {
	// NewPuller fails only on invalid options: find out now.
	if _, err := remote.NewPuller(opts...); err != nil {
		return nil, err
	}
	return &pullers{opts: opts, maxRepos: maxRepos, regs: map[string]*regPuller{}, repos: map[string]struct{}{}}, nil
}

func registryKey(reg name.Registry) string { return reg.Scheme() + "://" + reg.RegistryStr() }

// For returns the Puller to use for repo.
func (p *pullers) For(repo name.Repository) *remote.Puller {
	key := repo.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.repos[key]; !ok {
		if len(p.repos) >= p.maxRepos {
			clear(p.regs)
			clear(p.repos)
		}
		p.repos[key] = struct{}{}
	}
	rk := registryKey(repo.Registry)
	r, ok := p.regs[rk]
	if !ok {
		if len(p.regs) >= maxRegistries {
			clear(p.regs)
		}
		r = p.newPuller()
		p.regs[rk] = r
	}
	return r.p
}

// renew replaces reg's Puller if it is still used, the one a failing
// operation used (one made since is already fresh).
func (p *pullers) renew(reg name.Registry, used *remote.Puller) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rk := registryKey(reg)
	if r, ok := p.regs[rk]; ok && r.p == used {
		p.regs[rk] = p.newPuller()
	}
}

func (p *pullers) newPuller() *regPuller {
	pl, err := remote.NewPuller(p.opts...)
	if err != nil {
		// The options were accepted by newPullers.
		panic("registry: " + err.Error())
	}
	return &regPuller{p: pl}
}
