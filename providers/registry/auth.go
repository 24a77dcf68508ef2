package registry

import (
	"context"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imagegate/imagegate/providers/facts"
)

// authRetry runs op with repo's Puller. When op fails in a way a changed
// auth challenge explains (see authState.suspect: the registry answered 401,
// or a handshake made from a remembered ping answer failed), the registry's remembered ping answers and its Puller are
// dropped and op runs once more, with a fresh ping and handshake: a
// registry that changes its challenge is noticed on the first failing
// request, not after pingTTL.
func authRetry[T any](ctx context.Context, c *Client, repo name.Repository, op func(context.Context, *remote.Puller) (T, error)) (T, error) {
	st := &authState{}
	start := time.Now()
	used := c.pullers.For(repo)
	v, err := op(context.WithValue(ctx, authStateKey{}, st), used)
	if err == nil || !st.suspect() || ctx.Err() != nil {
		return v, err
	}
	c.pings.invalidate(repo.RegistryStr(), start)
	c.pullers.renew(repo.Registry, used)
	return op(ctx, c.pullers.For(repo))
}

// getManifest GETs the manifest at ref.
//
// On first contact with an anonymous registry (no ping answer remembered
// or in flight, and no credential for it in the keychain) the GET is sent
// at once, without credentials, while the registry is pinged alongside: a
// registry that serves anonymous reads answers it, and the first contact
// costs no extra round trip for the ping. Any other answer than the
// manifest, "not found" or a body over the limit (a 401 asking for a token,
// a 403, throttling, a server error) is set aside and the GET made the usual way (ping answer, token,
// retries), which then finds the ping answered or in flight. The early GET
// goes to the same registry host as the usual one, through the same guard,
// limits and redirect checks, and never carries credentials.
func (c *Client) getManifest(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	reg := ref.Context().Registry
	if c.firstContact(reg) {
		go func() {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
			defer cancel()
			_, _ = transport.Ping(pctx, reg, c.pingRT) // fills c.pings
		}()
		if p, err := remote.NewPuller(remote.WithTransport(c.anonRT), remote.WithJobs(c.jobs)); err == nil {
			d, err := p.Get(ctx, ref)
			// The answers a registry gives without auth that credentials
			// or a token would not change: the manifest, "not found", a
			// body over the limit.
			if code := classify(err); err == nil || code == facts.CodeNotFound || code == facts.CodeInvalidContent {
				return d, err
			}
		}
	}
	return authRetry(ctx, c, ref.Context(), func(ctx context.Context, p *remote.Puller) (*remote.Descriptor, error) {
		return p.Get(ctx, ref)
	})
}

// firstContact reports whether reg has no ping answer remembered or in
// flight and reads from it are anonymous.
func (c *Client) firstContact(reg name.Registry) bool {
	if c.pings.known(reg.RegistryStr()) {
		return false
	}
	a, err := c.keychain.Resolve(reg)
	return err == nil && a == authn.Anonymous
}

// anonymousTransport is rt as go-containerregistry uses it for a registry
// that answered its ping 200 (no auth): a transport.Wrapper, so that it
// neither pings nor adds retries (an early GET is not retried: the usual
// one is).
func anonymousTransport(rt http.RoundTripper, ua string) (http.RoundTripper, error) {
	return transport.FromToken(name.Registry{}, authn.Anonymous, transport.NewUserAgent(rt, ua), &transport.Challenge{}, &transport.Token{})
}
