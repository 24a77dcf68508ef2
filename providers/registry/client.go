package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/imagegate/imagegate/providers/facts"
)

// Guard decides which registries may be contacted and dials only permitted
// addresses. *guard.Guard implements it.
type Guard interface {
	CheckRegistry(registry string) error
	Insecure(registry string) bool
	Transport() http.RoundTripper
}

// Observer is told about every HTTP request made to a registry. op is one of
// manifest_head, manifest_get, blob_get, referrers, tags, ping, token, other;
// result is the status code ("200", "404", "429") or "error".
type Observer interface {
	ObserveRegistryRequest(op, result string, d time.Duration)
}

// Limits bound what is read from a registry.
type Limits struct {
	ManifestBytes int64 // manifest or index
	ConfigBytes   int64 // image config blob
	Children      int   // platform manifests in one index
}

// DefaultLimits are generous for real images and small enough that a hostile
// registry cannot exhaust memory.
var DefaultLimits = Limits{ManifestBytes: 4 << 20, ConfigBytes: 4 << 20, Children: 64}

// Options configure a Client. Guard is required.
type Options struct {
	Guard     Guard
	Keychain  authn.Keychain // nil: anonymous
	Limits    Limits         // zero fields take DefaultLimits
	Observer  Observer       // nil: none
	UserAgent string
	// Jobs bounds parallel fetches for one image (platform children, configs).
	Jobs int
	// Retry bounds retries of transient failures (429, 5xx, resets). Zero takes
	// a short backoff suited to admission budgets.
	Retry remote.Backoff
	// MaxRepositories bounds the per-repository connection and auth state
	// kept between lookups; past it, that state starts afresh. Zero takes
	// DefaultMaxRepositories.
	MaxRepositories int
}

// Client fetches image facts. It is safe for concurrent use and meant to be
// built once: its pullers cache registry authentication.
type Client struct {
	guard   Guard
	pullers *pullers
	pings   *pingCache
	bodies  *bodies
	limits  Limits
	jobs    int
	// keychain decides whether a first contact may send its first GET
	// before the ping (getManifest); pingRT and anonRT are the transports
	// of that ping and that GET.
	keychain authn.Keychain
	pingRT   http.RoundTripper
	anonRT   http.RoundTripper
}

// New builds a Client.
func New(o Options) (*Client, error) {
	if o.Guard == nil {
		return nil, errors.New("registry: a guard is required")
	}
	if o.Limits.ManifestBytes <= 0 {
		o.Limits.ManifestBytes = DefaultLimits.ManifestBytes
	}
	if o.Limits.ConfigBytes <= 0 {
		o.Limits.ConfigBytes = DefaultLimits.ConfigBytes
	}
	if o.Limits.Children <= 0 {
		o.Limits.Children = DefaultLimits.Children
	}
	if o.Jobs <= 0 {
		o.Jobs = 8
	}
	if o.Retry.Steps == 0 {
		o.Retry = remote.Backoff{Duration: 100 * time.Millisecond, Factor: 3, Jitter: 0.1, Steps: 3}
	}
	if o.UserAgent == "" {
		o.UserAgent = "imagegate"
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.NewMultiKeychain() // resolves to anonymous
	}
	pings := newPingCache(&limitTransport{next: o.Guard.Transport(), limits: o.Limits, observer: o.Observer})
	var rt http.RoundTripper = pings
	anonRT, err := anonymousTransport(rt, o.UserAgent)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	opts := []remote.Option{
		remote.WithTransport(rt),
		remote.WithAuthFromKeychain(kc),
		remote.WithUserAgent(o.UserAgent),
		remote.WithJobs(o.Jobs),
		remote.WithRetryBackoff(o.Retry),
	}
	if o.MaxRepositories <= 0 {
		o.MaxRepositories = DefaultMaxRepositories
	}
	p, err := newPullers(o.MaxRepositories, opts...)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Client{
		guard: o.Guard, pullers: p, pings: pings, bodies: newBodies(), limits: o.Limits, jobs: o.Jobs,
		keychain: kc, pingRT: transport.NewUserAgent(rt, o.UserAgent), anonRT: anonRT,
	}, nil
}

// Check reports, without any I/O, whether ref's registry may be contacted.
func (c *Client) Check(ref Ref) error {
	if err := c.guard.CheckRegistry(ref.Registry()); err != nil {
		return &facts.Error{Code: facts.CodeNotAllowed, Image: ref.Key, Err: err}
	}
	return nil
}

// Resolve returns the descriptor a tag points to now.
//
// known says whether the caller has resolved the tag before, so that it
// probably knows its digest's facts already: then a manifest HEAD is enough
// (Docker Hub counts GETs of manifests as pulls, HEADs are free), and only a
// registry that answers the HEAD without a digest costs a GET. On first sight
// (known false) the manifest's body is needed anyway, so Resolve GETs it: the
// digest and the body in one round trip instead of a HEAD and a GET. The body
// is kept briefly (see bodies) for the Describe of its digest that follows.
// A GET whose body is not the content of the Docker-Content-Digest the
// registry sent with it is refused, as a GET by digest with the wrong body is.
func (c *Client) Resolve(ctx context.Context, image string, tag name.Tag, known bool) (v1.Descriptor, error) {
	if err := c.guard.CheckRegistry(canonicalRegistry(tag.RegistryStr())); err != nil {
		return v1.Descriptor{}, &facts.Error{Code: facts.CodeNotAllowed, Image: image, Err: err}
	}
	if known {
		desc, err := authRetry(ctx, c, tag.Context(), func(ctx context.Context, p *remote.Puller) (*v1.Descriptor, error) {
			return p.Head(ctx, tag)
		})
		if err == nil {
			return *desc, nil
		}
		if code := classify(err); code != facts.CodeUnavailable || !headLacksDigest(err) {
			return v1.Descriptor{}, wrap(image, "resolve tag "+tag.TagStr(), err)
		}
	}
	var header string
	d, err := c.getManifest(withDigestHeader(ctx, &header), tag)
	if err != nil {
		return v1.Descriptor{}, wrap(image, "resolve tag "+tag.TagStr(), err)
	}
	// ggcr names the body by its own sha256, except for signed schema 1
	// manifests (named by the header): keep only what the body's hash names.
	sum := sha256Digest(d.Manifest)
	if header != "" && header != sum {
		return v1.Descriptor{}, facts.Errorf(facts.CodeUnavailable, image,
			"resolve tag %s: the registry sent a manifest whose digest is %s with Docker-Content-Digest %s (not the content of its digest)", tag.TagStr(), sum, header)
	}
	if d.Digest.String() == sum {
		c.bodies.put(tag.Context().Name(), d.Manifest, d.MediaType)
	}
	return d.Descriptor, nil
}

// Describe fetches the manifest at d and, for an index, every platform child,
// plus their image configs, in parallel. The returned facts carry Digest,
// MediaType, Size, Config and Platforms.
func (c *Client) Describe(ctx context.Context, image string, d name.Digest) (*facts.Facts, error) {
	return c.DescribeEach(ctx, image, d, nil)
}

// DescribeEach is Describe that, as soon as an index is parsed, calls onChild
// with the digest of every image manifest it lists, so a caller can start
// per-platform work (signature discovery) while the platform manifests and
// configs are still being fetched. onChild may be nil.
func (c *Client) DescribeEach(ctx context.Context, image string, d name.Digest, onChild func(digest string)) (*facts.Facts, error) {
	if err := c.guard.CheckRegistry(canonicalRegistry(d.RegistryStr())); err != nil {
		return nil, &facts.Error{Code: facts.CodeNotAllowed, Image: image, Err: err}
	}
	desc, err := c.manifest(ctx, d)
	if err != nil {
		return nil, wrap(image, "get manifest "+d.DigestStr(), err)
	}
	f := &facts.Facts{
		Digest:    desc.Digest.String(),
		MediaType: string(desc.MediaType),
		Size:      desc.Size,
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, facts.Errorf(facts.CodeInvalidContent, image, "index %s: %v", desc.Digest, err)
		}
		f.Platforms, err = c.platforms(ctx, image, d.Repository, idx, onChild)
		if err != nil {
			return nil, err
		}
	case desc.MediaType.IsImage():
		cfg, err := c.imageConfig(ctx, image, d.Repository, desc.Manifest)
		if err != nil {
			return nil, err
		}
		f.Config = cfg
	default:
		return nil, facts.Errorf(facts.CodeInvalidContent, image, "unsupported manifest media type %q", desc.MediaType)
	}
	return f, nil
}

// manifest returns the manifest at d: the body a first Resolve of a tag
// read, when it is the content of d, or a GET (ggcr checks the body against
// the digest).
func (c *Client) manifest(ctx context.Context, d name.Digest) (*remote.Descriptor, error) {
	if b, mt, ok := c.bodies.take(d.Context().Name(), d.DigestStr()); ok {
		h, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return nil, err
		}
		return &remote.Descriptor{Manifest: b, Descriptor: v1.Descriptor{Digest: h, MediaType: mt, Size: int64(len(b))}}, nil
	}
	return c.getManifest(ctx, d)
}

// platforms describes every image child of an index, skipping BuildKit's
// attestation manifests (platform unknown/unknown).
func (c *Client) platforms(ctx context.Context, image string, repo name.Repository, idx *v1.IndexManifest, onChild func(string)) ([]facts.Platform, error) {
	var children []v1.Descriptor
	for _, m := range idx.Manifests {
		if m.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		children = append(children, m)
	}
	if len(children) > c.limits.Children {
		return nil, facts.Errorf(facts.CodeInvalidContent, image, "index lists %d manifests, more than the limit of %d", len(children), c.limits.Children)
	}
	out := make([]facts.Platform, len(children))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.jobs)
	for i, m := range children {
		p := facts.Platform{Digest: m.Digest.String(), MediaType: string(m.MediaType), Size: m.Size}
		if m.Platform != nil {
			p.OS, p.Architecture, p.Variant, p.OSVersion = m.Platform.OS, m.Platform.Architecture, m.Platform.Variant, m.Platform.OSVersion
		}
		out[i] = p
		if !m.MediaType.IsImage() {
			continue // a nested index or an artifact: listed, not descended into
		}
		if onChild != nil {
			onChild(m.Digest.String())
		}
		if m.Size > c.limits.ManifestBytes {
			return nil, facts.Errorf(facts.CodeInvalidContent, image, "platform manifest %s is %d bytes, more than the limit of %d", m.Digest, m.Size, c.limits.ManifestBytes)
		}
		g.Go(func() error {
			child := repo.Digest(m.Digest.String())
			desc, err := authRetry(gctx, c, repo, func(ctx context.Context, p *remote.Puller) (*remote.Descriptor, error) {
				return p.Get(ctx, child)
			})
			if err != nil {
				return overDeclared(image, "get platform manifest "+m.Digest.String(), m.Size, err)
			}
			cfg, err := c.imageConfig(gctx, image, repo, desc.Manifest)
			if err != nil {
				return err
			}
			out[i].Config = cfg
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// imageConfig fetches and digest-verifies the config blob of an image manifest.
func (c *Client) imageConfig(ctx context.Context, image string, repo name.Repository, raw []byte) (*facts.Config, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, facts.Errorf(facts.CodeInvalidContent, image, "manifest: %v", err)
	}
	switch m.Config.MediaType {
	case types.OCIConfigJSON, types.DockerConfigJSON:
	default:
		// An OCI artifact: no image config to read.
		return nil, nil
	}
	if m.Config.Size > c.limits.ConfigBytes {
		return nil, facts.Errorf(facts.CodeInvalidContent, image, "config %s is %d bytes, more than the limit of %d", m.Config.Digest, m.Config.Size, c.limits.ConfigBytes)
	}
	b, err := authRetry(ctx, c, repo, func(ctx context.Context, p *remote.Puller) ([]byte, error) {
		layer, err := p.Layer(ctx, repo.Digest(m.Config.Digest.String()))
		if err != nil {
			return nil, wrap(image, "get config "+m.Config.Digest.String(), err)
		}
		rc, err := layer.Compressed() // verifies size and digest while reading
		if err != nil {
			return nil, overDeclared(image, "get config "+m.Config.Digest.String(), m.Config.Size, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, c.limits.ConfigBytes+1))
		if err == nil && int64(len(b)) > c.limits.ConfigBytes {
			err = fmt.Errorf("config %s: %w (limit %d bytes)", m.Config.Digest, errTooLarge, c.limits.ConfigBytes)
		}
		if err != nil {
			return nil, overDeclared(image, "read config "+m.Config.Digest.String(), m.Config.Size, err)
		}
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return nil, facts.Errorf(facts.CodeInvalidContent, image, "config %s: %v", m.Config.Digest, err)
	}
	out := &facts.Config{
		Labels:       facts.LabelsOf(cf.Config.Labels),
		User:         cf.Config.User,
		OS:           cf.OS,
		Architecture: cf.Architecture,
		Variant:      cf.Variant,
		Digest:       m.Config.Digest.String(),
	}
	if !cf.Created.IsZero() {
		out.Created = cf.Created.UTC().Format(time.RFC3339)
	}
	return out, nil
}

// overDeclared wraps an error fetching content whose descriptor declared its
// size, which was checked against the limit before the fetch. A body over
// the limit then is not the content the digest names (the digest pins the
// size too): a registry fault like a digest mismatch, so transient. As
// invalid_content it would be cached as a verdict on an image that is fine,
// by imagegate for cache.negativeTTL and by Gatekeeper for minutes.
func overDeclared(image, op string, declared int64, err error) error {
	if declared > 0 && errors.Is(err, errTooLarge) {
		return &facts.Error{Code: facts.CodeUnavailable, Image: image, Err: fmt.Errorf(
			"%s: the registry sent more than the %d bytes its descriptor declares (not the content of its digest): %w", op, declared, describe(err))}
	}
	return wrap(image, op, err)
}
