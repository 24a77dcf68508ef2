package lookup

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/signature"
)

// Observer is told about cache outcomes and cold fetches.
type Observer interface {
	// ObserveCache reports a lookup in cache "tag", "facts" or "negative".
	ObserveCache(cache string, hit bool)
	// ObserveInFlight reports the change in the number of cold fetches running.
	ObserveInFlight(delta int)
}

// Options configure a Service. Registry is required; zero values take the
// documented defaults.
type Options struct {
	Registry *registry.Client
	// Insecure reports registries reached over plain HTTP.
	Insecure func(registry string) bool
	// Generation identifies the configuration the Service was built from; it is
	// part of every cache key.
	Generation uint64

	TagTTL   time.Duration // tag → digest; default 30s
	FactsTTL time.Duration // digest → facts; default 1h
	// UnsignedTTL replaces FactsTTL for facts with no verified signature or
	// attestation: signatures can be added after the first look. Default 1m.
	UnsignedTTL time.Duration
	// Signatures verifies signatures and attestations; nil or unconfigured
	// skips discovery (facts then say why in verificationErrors).
	Signatures   *signature.Verifier
	NegativeTTL  time.Duration // definitive failures; default 15s
	MaxEntries   int           // per cache; default 10000
	FetchTimeout time.Duration // a cold fetch's own deadline; default 30s
	MaxInFlight  int           // cold fetches running at once; default 64
	Observer     Observer
	Now          func() time.Time // for tests
}

// Service answers facts and digest lookups. It is safe for concurrent use.
type Service struct {
	o        Options
	gen      string
	tags     *lru[v1.Hash] // tag → the digest it pointed to
	facts    *lru[*facts.Facts]
	refs     *lru[*keyState]
	negative *lru[error]
	group    singleflight.Group
	slots    chan struct{}
}

// New builds a Service.
func New(o Options) (*Service, error) {
	if o.Registry == nil {
		return nil, errors.New("lookup: a registry client is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.TagTTL, 30*time.Second)
	def(&o.FactsTTL, time.Hour)
	def(&o.UnsignedTTL, time.Minute)
	def(&o.NegativeTTL, 15*time.Second)
	def(&o.FetchTimeout, 30*time.Second)
	if o.MaxEntries == 0 {
		o.MaxEntries = 10000
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	return &Service{
		o:        o,
		gen:      strconv.FormatUint(o.Generation, 10) + "|",
		tags:     newLRU[v1.Hash](o.MaxEntries, o.Now),
		facts:    newLRU[*facts.Facts](o.MaxEntries, o.Now),
		refs:     newLRU[*keyState](o.MaxEntries, o.Now),
		negative: newLRU[error](o.MaxEntries, o.Now),
		slots:    make(chan struct{}, o.MaxInFlight),
	}, nil
}

// Parse parses key and checks its registry against the allowlist. No I/O.
// Parsed references are kept (they depend only on the key and this
// Service's configuration): warm requests skip the parser.
func (s *Service) Parse(key string) (registry.Ref, error) {
	ks, err := s.keyState(key)
	if err != nil {
		return registry.Ref{}, err
	}
	return ks.ref, nil
}

// keyState is what a Service keeps per image key: the parsed reference and
// the facts it last composed for the key.
type keyState struct {
	ref registry.Ref
	// checkErr is the registry allowlist's verdict on ref, which depends
	// only on the key and this Service's configuration.
	checkErr error
	// tagKey is the tag cache key ("" without a tag); pinnedKey the facts
	// cache key of a pinned digest ("" without one).
	tagKey, pinnedKey string
	last              atomic.Pointer[composed]
}

// composed is the facts answered for a key, and what they were made from.
type composed struct {
	base      *facts.Facts
	factsKey  string  // the facts cache key base came from
	tagHash   v1.Hash // the tag's digest (zero without a tag)
	tagDigest string
	out       *facts.Facts
}

func (s *Service) keyState(key string) (*keyState, error) {
	ks, ok := s.refs.get(key)
	if !ok {
		ref, err := registry.Parse(key, s.o.Insecure)
		if err != nil {
			return nil, err
		}
		ks = &keyState{ref: ref, checkErr: s.o.Registry.Check(ref)}
		if ref.Tag != nil {
			ks.tagKey = s.tagKey(ref)
		}
		if ref.Digest != nil {
			ks.pinnedKey = s.factsKey(ref, ref.Digest.DigestStr())
		}
		s.refs.add(key, ks, time.Hour)
	}
	if ks.checkErr != nil {
		return nil, ks.checkErr
	}
	return ks, nil
}

// CachedBase returns key's facts when the caches hold everything needed to
// answer (parsed key, the tag's digest while fresh, the digest's facts): no
// I/O, no goroutine, no wait. ok is false otherwise, and for keys that fail;
// Facts then answers. f is what Facts would return; base is the digest's
// facts f was composed from (shared by every key naming that digest,
// without the per-key fields image, reference and tagDigest), so encodings
// can be kept per digest rather than per key.
func (s *Service) CachedBase(key string) (f, base *facts.Facts, ok bool) {
	ks, found := s.refs.get(key)
	if !found || ks.checkErr != nil {
		return nil, nil, false
	}
	last := ks.last.Load()
	var tag v1.Hash
	if ks.tagKey != "" {
		if tag, ok = s.tags.get(ks.tagKey); !ok {
			return nil, nil, false
		}
	}
	fkey := ks.pinnedKey
	if fkey == "" {
		// A tag key: its facts are the tag's digest's.
		if last != nil && last.tagHash == tag {
			fkey = last.factsKey
		} else {
			fkey = s.factsKey(ks.ref, tag.String())
		}
	}
	base, ok = s.facts.get(fkey)
	if !ok {
		// Facts answers, and counts the misses.
		return nil, nil, false
	}
	if ks.tagKey != "" {
		s.o.Observer.ObserveCache("tag", true)
	}
	s.o.Observer.ObserveCache("facts", true)
	if last != nil && last.base == base && last.tagHash == tag {
		return last.out, base, true
	}
	tagDigest := ""
	if ks.pinnedKey != "" && ks.tagKey != "" {
		tagDigest = tag.String()
	}
	return s.compose(ks, base, fkey, tag, tagDigest), base, true
}

// Facts returns the facts for one image key. The returned value is shared with
// the cache: callers must not modify it.
//
// While nothing changes, a key's facts are the same pointer on every call,
// so callers may keep derived forms (JSON, Rego values) keyed by it.
func (s *Service) Facts(ctx context.Context, key string) (*facts.Facts, error) {
	ks, err := s.keyState(key)
	if err != nil {
		return nil, err
	}
	ref := ks.ref
	var (
		digest  string
		tagHash v1.Hash
	)
	switch {
	case ref.Digest != nil && ref.Tag != nil:
		// repo:tag@digest: the pinned digest's facts and the tag's digest now,
		// fetched at once.
		digest = ref.Digest.DigestStr()
		if d, ok := s.cachedTag(ref); ok {
			f, err := s.describe(ctx, ref, digest)
			if err != nil {
				return nil, err
			}
			return s.compose(ks, f, ks.pinnedKey, d, d.String()), nil
		}
		type res struct {
			d   v1.Hash
			err error
		}
		ch := make(chan res, 1)
		go func() {
			d, err := s.resolve(ctx, ref)
			ch <- res{d, err}
		}()
		f, ferr := s.describe(ctx, ref, digest)
		r := <-ch
		if ferr != nil {
			return nil, ferr
		}
		if r.err != nil {
			return nil, r.err
		}
		return s.compose(ks, f, ks.pinnedKey, r.d, r.d.String()), nil
	case ref.Digest != nil:
		digest = ref.Digest.DigestStr()
	default:
		d, err := s.resolve(ctx, ref)
		if err != nil {
			if ctx.Err() != nil {
				// The budget ran out while the tag was resolving. That fetch
				// carries on; so must the describe it leads to, or the next
				// request would find only the tag warm.
				go s.warm(ctx, ref)
			}
			return nil, err
		}
		digest, tagHash = d.String(), d
	}
	f, err := s.describe(ctx, ref, digest)
	if err != nil {
		return nil, err
	}
	fkey := ks.pinnedKey
	if fkey == "" {
		fkey = s.factsKey(ref, digest)
	}
	return s.compose(ks, f, fkey, tagHash, ""), nil
}

// warm finishes, detached from the caller, a tag key's lookup that the caller
// gave up on: it waits for the tag's fetch (or takes the cached tag) and
// describes the digest, bounded by FetchTimeout for each step.
func (s *Service) warm(ctx context.Context, ref registry.Ref) {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.o.FetchTimeout)
	defer cancel()
	d, err := s.resolve(bg, ref)
	if err != nil {
		return
	}
	_, _ = s.describe(bg, ref, d.String())
}

// Pinned is an image key resolved to a digest.
type Pinned struct {
	Name   string // registry/repository, Docker Hub as docker.io
	Tag    string // the key's tag, "" for a digest-only key
	Digest string
}

// Reference returns name@digest, or name:tag@digest with keepTag.
func (p Pinned) Reference(keepTag bool) string {
	if keepTag && p.Tag != "" {
		return p.Name + ":" + p.Tag + "@" + p.Digest
	}
	return p.Name + "@" + p.Digest
}

// Digest returns the digest an image key stands for: the pinned digest of a
// digest key (no I/O), or the tag's current digest.
func (s *Service) Digest(ctx context.Context, key string) (Pinned, error) {
	ref, err := s.Parse(key)
	if err != nil {
		return Pinned{}, err
	}
	p := Pinned{Name: ref.Facts.Registry + "/" + ref.Facts.Repository, Tag: ref.Facts.Tag}
	if ref.Digest != nil {
		p.Digest = ref.Digest.DigestStr()
		return p, nil
	}
	d, err := s.resolve(ctx, ref)
	if err != nil {
		return Pinned{}, err
	}
	p.Digest = d.String()
	return p, nil
}

// compose answers a key with the cached facts of its digest (fkey), the
// key's own fields filled in: the same pointer as last time while nothing
// changed.
func (s *Service) compose(ks *keyState, cached *facts.Facts, fkey string, tagHash v1.Hash, tagDigest string) *facts.Facts {
	if c := ks.last.Load(); c != nil && c.base == cached && c.tagHash == tagHash && c.tagDigest == tagDigest {
		return c.out
	}
	f := *cached
	f.Image = ks.ref.Key
	f.Reference = ks.ref.Facts
	f.TagDigest = tagDigest
	ks.last.Store(&composed{base: cached, factsKey: fkey, tagHash: tagHash, tagDigest: tagDigest, out: &f})
	return &f
}

// resolve returns the tag's current descriptor, from the tag cache when fresh.
//
// A tag seen before (its "known" marker, see tagKnownFor) is checked with a
// manifest HEAD, which Docker Hub does not count as a pull; on first sight
// the registry client GETs the tag instead (digest and body in one round
// trip, the body then serves the describe). A key that pins a digest too
// needs only the tag's digest: HEAD.
func (s *Service) resolve(ctx context.Context, ref registry.Ref) (v1.Hash, error) {
	if d, ok := s.cachedTag(ref); ok {
		return d, nil
	}
	key := s.tagKey(ref)
	cached := func() (any, bool) { return s.tags.get(key) }
	v, err := s.flight(ctx, key, ref.Key, cached, func(fctx context.Context) (any, error) {
		_, known := s.tags.get(key + tagKnownSuffix)
		d, err := s.o.Registry.Resolve(fctx, ref.Key, *ref.Tag, known || ref.Digest != nil)
		if err != nil {
			return nil, err
		}
		s.tags.add(key, d.Digest, s.o.TagTTL)
		s.tags.add(key+tagKnownSuffix, d.Digest, tagKnownFor)
		return d.Digest, nil
	})
	if err != nil {
		return v1.Hash{}, err
	}
	return v.(v1.Hash), nil
}

// A tag resolved within tagKnownFor is "known": the tag cache holds, beside
// the tag's entry (fresh for TagTTL), a marker under the tag key plus
// tagKnownSuffix that outlives it. Markers share the tag cache's bound
// (MaxEntries); an evicted or expired marker costs one GET of the tag.
const (
	tagKnownSuffix = "|known"
	tagKnownFor    = 24 * time.Hour
)

func (s *Service) tagKey(ref registry.Ref) string {
	return s.gen + "tag|" + ref.Repository().Name() + ":" + ref.Tag.TagStr()
}

// cachedTag returns the tag's descriptor when the tag cache holds it.
func (s *Service) cachedTag(ref registry.Ref) (v1.Hash, bool) {
	d, ok := s.tags.get(s.tagKey(ref))
	s.o.Observer.ObserveCache("tag", ok)
	return d, ok
}

func (s *Service) factsKey(ref registry.Ref, digest string) string {
	return s.gen + "facts|" + ref.Repository().Name() + "@" + digest
}

// describe returns what repository@digest describes, from the facts cache when
// present. The cached value carries no per-key fields (image, reference).
func (s *Service) describe(ctx context.Context, ref registry.Ref, digest string) (*facts.Facts, error) {
	repo := ref.Repository()
	key := s.factsKey(ref, digest)
	if f, ok := s.facts.get(key); ok {
		s.o.Observer.ObserveCache("facts", true)
		return f, nil
	}
	s.o.Observer.ObserveCache("facts", false)
	cached := func() (any, bool) { return s.facts.get(key) }
	v, err := s.flight(ctx, key, ref.Key, cached, func(fctx context.Context) (any, error) {
		f, err := s.fetchFacts(fctx, ref.Key, repo.Digest(digest))
		if err != nil {
			return nil, err
		}
		f.Normalize()
		ttl := s.o.FactsTTL
		if !f.Signed() {
			ttl = min(ttl, s.o.UnsignedTTL)
		}
		s.facts.add(key, f, ttl)
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*facts.Facts), nil
}

// notConfigured explains empty signature lists when no trust is configured.
const notConfigured = "signatures not checked: no trust.keys or trust.trustedRoots are configured"

// fetchFacts describes d and verifies its signatures at once; for an index,
// each platform's signatures are verified as soon as the platforms are known.
func (s *Service) fetchFacts(ctx context.Context, image string, d name.Digest) (*facts.Facts, error) {
	sv := s.o.Signatures
	if sv == nil || !sv.Configured() {
		f, err := s.o.Registry.Describe(ctx, image, d)
		if err != nil {
			return nil, err
		}
		f.VerificationErrors = []string{notConfigured}
		return f, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	var (
		f   *facts.Facts
		top signature.Result
	)
	g.Go(func() error {
		var err error
		top, err = sv.Check(gctx, s.o.Registry, image, d)
		return err
	})
	// Each platform's signatures are looked for as soon as the index names
	// the platform, not after its manifest and config arrive.
	var (
		mu       sync.Mutex
		children = map[string]signature.Result{}
	)
	onChild := func(digest string) {
		g.Go(func() error {
			r, err := sv.Check(gctx, s.o.Registry, image, d.Context().Digest(digest))
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			children[digest] = r
			return nil
		})
	}
	g.Go(func() error {
		var err error
		f, err = s.o.Registry.DescribeEach(gctx, image, d, onChild)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	f.Signatures, f.Attestations, f.VerificationErrors = top.Signatures, top.Attestations, top.Errors
	for i := range f.Platforms {
		p := &f.Platforms[i]
		if r, ok := children[p.Digest]; ok {
			p.Signatures, p.Attestations, p.VerificationErrors = r.Signatures, r.Attestations, r.Errors
		}
	}
	return f, nil
}

// flight runs fn once per key across concurrent callers. fn runs with its own
// deadline, detached from the caller's, so a fetch that outlives one request's
// budget still lands in the cache for the next. Definitive failures are cached
// for NegativeTTL; transient ones are not cached at all. cached looks the key
// up again once the flight starts: a fetch that finished between the caller's
// cache miss and this flight has already stored its answer.
func (s *Service) flight(ctx context.Context, key, image string, cached func() (any, bool), fn func(context.Context) (any, error)) (any, error) {
	if err, ok := s.negative.get(key); ok {
		s.o.Observer.ObserveCache("negative", true)
		return nil, reimage(err, image)
	}
	ch := s.group.DoChan(key, func() (any, error) {
		if v, ok := cached(); ok {
			return v, nil
		}
		if err, ok := s.negative.get(key); ok {
			return nil, err
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.FetchTimeout)
		defer cancel()
		select {
		case s.slots <- struct{}{}:
		case <-fctx.Done():
			return nil, facts.Errorf(facts.CodeUnavailable, image, "too many lookups in flight (%d)", cap(s.slots))
		}
		s.o.Observer.ObserveInFlight(1)
		defer func() {
			<-s.slots
			s.o.Observer.ObserveInFlight(-1)
		}()
		v, err := fn(fctx)
		if err != nil && facts.CodeOf(err).Definitive() {
			s.negative.add(key, err, s.o.NegativeTTL)
		}
		return v, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, reimage(r.Err, image)
		}
		return r.Val, nil
	case <-ctx.Done():
		return nil, facts.Errorf(facts.CodeUnavailable, image, "registry lookup still running when the time budget ran out (%v)", context.Cause(ctx))
	}
}

// reimage returns err as seen by the caller of image: a shared fetch may have
// been started by a different key naming the same content.
func reimage(err error, image string) error {
	var fe *facts.Error
	if errors.As(err, &fe) && fe.Image != image {
		c := *fe
		c.Image = image
		return &c
	}
	if fe == nil {
		return &facts.Error{Code: facts.CodeUnavailable, Image: image, Err: fmt.Errorf("%w", err)}
	}
	return err
}

type nopObserver struct{}

func (nopObserver) ObserveCache(string, bool) {}
func (nopObserver) ObserveInFlight(int)       {}
