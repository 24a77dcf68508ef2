package lookup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
	tags     *lru[tagEntry] // tag → the digest it pointed to
	facts    *lru[*facts.Facts]
	refs     *lru[keyState]
	negative *lru[error]
	group    singleflight.Group
	slots    chan struct{}
	// trust is part of every facts key (TrustChanged).
	trust atomic.Uint64
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
		tags:     newLRU[tagEntry](o.MaxEntries, o.Now),
		facts:    newLRU[*facts.Facts](o.MaxEntries, o.Now),
		refs:     newLRU[keyState](o.MaxEntries, o.Now),
		negative: newLRU[error](o.MaxEntries, o.Now),
		slots:    make(chan struct{}, o.MaxInFlight),
	}, nil
}

// Parse parses key and checks its registry against the allowlist. No I/O.
// What a lookup answered from the caches needs of it is kept per key
// (keyState); the full parse (go-containerregistry's names) is redone when
// a lookup goes to the registry.
func (s *Service) Parse(key string) (registry.Ref, error) {
	return s.parse(key)
}

// keyState is what a Service keeps per image key: where the normalised
// reference's parts are in the key (keys that needed no normalising; else
// the reference itself) and the allowlist's verdict. Cache keys are built
// from it in a buffer on each lookup, not kept; go-containerregistry's
// name.Tag and name.Digest are not kept either (parse makes them again when
// a lookup needs the registry).
type keyState struct {
	// span is the offset and length in the key of the reference's
	// registry, repository, tag and digest, when norm is nil.
	span [4][2]uint16
	// norm is the reference of a key that needed normalising (Docker Hub
	// names, an upper-case registry host).
	norm *facts.Reference
	// checkErr is the registry allowlist's verdict on the key, which
	// depends only on the key and this Service's configuration.
	checkErr error
}

func newKeyState(key string, r facts.Reference, checkErr error) keyState {
	ks := keyState{checkErr: checkErr}
	for i, part := range [4]string{r.Registry, r.Repository, r.Tag, r.Digest} {
		off, ok := within(key, part)
		if !ok {
			return keyState{norm: &r, checkErr: checkErr}
		}
		ks.span[i] = [2]uint16{off, uint16(len(part))}
	}
	return ks
}

// within returns part's offset in key when part is a substring of key's
// memory (not merely equal to one).
func within(key, part string) (uint16, bool) {
	if part == "" {
		return 0, true
	}
	if len(key) > math.MaxUint16 {
		return 0, false
	}
	k, p := uintptr(unsafe.Pointer(unsafe.StringData(key))), uintptr(unsafe.Pointer(unsafe.StringData(part)))
	if p < k || p+uintptr(len(part)) > k+uintptr(len(key)) {
		return 0, false
	}
	return uint16(p - k), true
}

// reference is the normalised reference of key, whose keyState ks is.
func (ks *keyState) reference(key string) facts.Reference {
	if ks.norm != nil {
		return *ks.norm
	}
	at := func(i int) string { return key[ks.span[i][0] : ks.span[i][0]+ks.span[i][1]] }
	return facts.Reference{Registry: at(0), Repository: at(1), Tag: at(2), Digest: at(3)}
}

// state returns key's keyState, from the refs cache or by parsing it.
func (s *Service) state(key string) (keyState, error) {
	ks, ok := s.refs.get(key)
	if !ok {
		ref, err := s.parse(key)
		if err != nil {
			return keyState{}, err
		}
		return newKeyState(ref.Key, ref.Facts, nil), nil
	}
	if ks.checkErr != nil {
		return keyState{}, ks.checkErr
	}
	return ks, nil
}

// parse parses key and checks it against the allowlist, keeping its
// keyState on first sight. A key whose keyState is kept is parsed again
// (the parser is deterministic; only lookups that need the registry come
// here) and its kept verdict answers.
func (s *Service) parse(key string) (registry.Ref, error) {
	if ks, ok := s.refs.get(key); ok && ks.checkErr != nil {
		return registry.Ref{}, ks.checkErr
	} else if ok {
		return registry.Parse(key, s.o.Insecure)
	}
	ref, err := registry.Parse(key, s.o.Insecure)
	if err != nil {
		return registry.Ref{}, err
	}
	ks := newKeyState(key, ref.Facts, s.o.Registry.Check(ref))
	s.refs.add(key, ks, time.Hour)
	if ks.checkErr != nil {
		return registry.Ref{}, ks.checkErr
	}
	return ref, nil
}

// keyBuf sizes the stack buffers cache keys are built in; longer keys
// (long repository names) fall back to the heap.
const keyBuf = 192

// CachedBase returns key's facts when the caches hold everything needed to
// answer (parsed key, the tag's digest while fresh, the digest's facts): no
// I/O, no goroutine, no wait. ok is false otherwise, and for keys that fail;
// Facts then answers. f is what Facts would return; base is the digest's
// facts f was composed from (shared by every key naming that digest,
// without the per-key fields image, reference and tagDigest), so encodings
// can be kept per digest rather than per key.
func (s *Service) CachedBase(key string) (f, base *facts.Facts, ok bool) {
	c, ok := s.CachedParts(key)
	if !ok {
		return nil, nil, false
	}
	return c.Compose(key), c.Base, true
}

// Cached is a key's facts as the caches hold them, not composed into one
// value: the digest's facts, shared by every key naming that digest (no
// image, reference or tagDigest), and the key's own reference and tagDigest.
// Answering from these parts allocates nothing per key.
type Cached struct {
	Base      *facts.Facts
	Reference facts.Reference
	TagDigest string
}

// Compose returns the facts Facts answers for key: Base with the key's own
// fields.
func (c *Cached) Compose(key string) *facts.Facts {
	return compose(key, &c.Reference, c.Base, c.TagDigest)
}

// CachedParts is CachedBase without composing: the parts of key's facts
// when the caches hold everything needed, ok false otherwise.
func (s *Service) CachedParts(key string) (c Cached, ok bool) {
	ks, found := s.refs.get(key)
	if !found || ks.checkErr != nil {
		return Cached{}, false
	}
	ref := ks.reference(key)
	r := &ref
	var buf [keyBuf]byte
	var tag v1.Hash
	if r.Tag != "" {
		if tag, ok = s.freshTag(s.appendTagKey(buf[:0], r)); !ok {
			return Cached{}, false
		}
	}
	var fkey []byte
	if r.Digest != "" {
		fkey = s.appendFactsKey(buf[:0], r, r.Digest)
	} else {
		// A tag key: its facts are the tag's digest's.
		fkey = appendHash(s.appendFactsKey(buf[:0], r, ""), tag)
	}
	base, ok := s.facts.getBytes(fkey)
	if !ok {
		// Facts answers, and counts the misses.
		return Cached{}, false
	}
	if r.Tag != "" {
		s.o.Observer.ObserveCache("tag", true)
	}
	s.o.Observer.ObserveCache("facts", true)
	tagDigest := ""
	if r.Digest != "" && r.Tag != "" {
		tagDigest = hashString(tag, r.Digest)
	}
	return Cached{Base: base, Reference: ref, TagDigest: tagDigest}, true
}

// Facts returns the facts for one image key. Everything but the per-key
// fields (Image, Reference, TagDigest) is shared with the cache: callers
// must not modify the value. Derived forms (JSON, Rego values) are kept
// per digest, keyed by the base CachedBase returns: the value Facts
// returns is made afresh on each call.
func (s *Service) Facts(ctx context.Context, key string) (*facts.Facts, error) {
	if f, _, ok := s.CachedBase(key); ok {
		// Warm: no parse (a key is parsed again only on the way to the
		// registry).
		return f, nil
	}
	ref, err := s.parse(key)
	if err != nil {
		return nil, err
	}
	var digest string
	switch {
	case ref.Digest != nil && ref.Tag != nil:
		// repo:tag@digest: the pinned digest's facts and the tag's digest now,
		// fetched at once.
		digest = ref.Facts.Digest
		if d, ok := s.cachedTag(ref); ok {
			f, err := s.describe(ctx, ref, digest)
			if err != nil {
				return nil, err
			}
			return compose(ref.Key, &ref.Facts, f, hashString(d, digest)), nil
		}
		type res struct {
			d   v1.Hash
			err error
		}
		ch := make(chan res, 1)
		go func() {
			d, err := s.resolve(ctx, ref, false)
			ch <- res{d, err}
		}()
		f, ferr := s.describe(ctx, ref, digest)
		r := <-ch
		if ferr != nil {
			return nil, ferr
		}
		if facts.CodeOf(r.err) == facts.CodeNotFound {
			// The digest pins what runs and it exists; the tag is gone
			// (deleted, or cleaned up by a retention policy). The facts
			// stand, with no tagDigest: freshness cannot say whether the
			// tag moved, and nothing else depends on the tag.
			return compose(ref.Key, &ref.Facts, f, ""), nil
		}
		if r.err != nil {
			return nil, r.err
		}
		return compose(ref.Key, &ref.Facts, f, hashString(r.d, digest)), nil
	case ref.Digest != nil:
		digest = ref.Facts.Digest
	default:
		d, err := s.resolve(ctx, ref, true)
		if err != nil {
			if ctx.Err() != nil {
				// The budget ran out while the tag was resolving. That fetch
				// carries on; so must the describe it leads to, or the next
				// request would find only the tag warm.
				go s.warm(ctx, ref)
			}
			return nil, err
		}
		digest = d.String()
	}
	f, err := s.describe(ctx, ref, digest)
	if err != nil {
		return nil, err
	}
	return compose(ref.Key, &ref.Facts, f, ""), nil
}

// warm finishes, detached from the caller, a tag key's lookup that the caller
// gave up on: it waits for the tag's fetch (or takes the cached tag) and
// describes the digest, bounded by FetchTimeout for each step.
func (s *Service) warm(ctx context.Context, ref registry.Ref) {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.o.FetchTimeout)
	defer cancel()
	d, err := s.resolve(bg, ref, true)
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
	ks, err := s.state(key)
	if err != nil {
		return Pinned{}, err
	}
	ref := ks.reference(key)
	r := &ref
	p := Pinned{Name: r.Registry + "/" + r.Repository, Tag: r.Tag}
	if r.Digest != "" {
		p.Digest = r.Digest
		return p, nil
	}
	var buf [keyBuf]byte
	if d, ok := s.freshTag(s.appendTagKey(buf[:0], r)); ok {
		s.o.Observer.ObserveCache("tag", true)
		p.Digest = d.String()
		return p, nil
	}
	full, err := s.parse(key)
	if err != nil {
		return Pinned{}, err
	}
	// Only the digest is needed, not the manifest: HEAD, which Docker Hub
	// does not count as a pull, even on first sight of the tag.
	d, err := s.resolve(ctx, full, false)
	if err != nil {
		return Pinned{}, err
	}
	p.Digest = d.String()
	return p, nil
}

// compose answers key with base, the cached facts of its digest, and the
// key's own fields.
func compose(key string, ref *facts.Reference, base *facts.Facts, tagDigest string) *facts.Facts {
	f := *base
	f.Image = key
	f.Reference = *ref
	f.TagDigest = tagDigest
	return &f
}

// hashString is h as a string: pinned itself when it names the same digest
// (the usual case for repo:tag@digest keys: no allocation).
func hashString(h v1.Hash, pinned string) string {
	a := len(h.Algorithm)
	if len(pinned) == a+1+len(h.Hex) && pinned[:a] == h.Algorithm && pinned[a] == ':' && pinned[a+1:] == h.Hex {
		return pinned
	}
	return h.String()
}

// resolve returns the tag's current digest, from the tag cache when fresh.
// body says whether the manifest is wanted next (a describe of the digest).
//
// A tag seen before (its entry is still in the tag cache, fresh or not, see
// tagKnownFor) is checked with a manifest HEAD, which Docker Hub does not
// count as a pull; so is a tag whose manifest is not wanted (repo:tag@digest
// keys, the digest provider). Otherwise, on first sight, the registry client
// GETs the tag: digest and body in one round trip, the body then serves the
// describe.
func (s *Service) resolve(ctx context.Context, ref registry.Ref, body bool) (v1.Hash, error) {
	if d, ok := s.cachedTag(ref); ok {
		return d, nil
	}
	key := s.tagKey(ref)
	cached := func() (any, bool) {
		if d, ok := s.freshTag([]byte(key)); ok {
			return d, true
		}
		return nil, false
	}
	v, err := s.flight(ctx, key, ref.Key, cached, func(fctx context.Context) (any, error) {
		_, known := s.tags.get(key)
		d, err := s.o.Registry.Resolve(fctx, ref.Key, *ref.Tag, known || !body)
		if err != nil {
			return nil, err
		}
		s.tags.add(key, tagEntry{digest: d.Digest, fresh: s.o.Now().Add(s.o.TagTTL).UnixNano()}, max(s.o.TagTTL, tagKnownFor))
		return d.Digest, nil
	})
	if err != nil {
		return v1.Hash{}, err
	}
	return v.(v1.Hash), nil
}

// tagEntry is what the tag cache keeps per tag: the digest it pointed to,
// served without asking the registry until fresh (TagTTL after it was
// resolved). The entry itself lives tagKnownFor: while it is there the tag
// is "known" and re-checked with a HEAD. One entry per tag, under the
// cache's MaxEntries bound; an evicted entry costs one GET of the tag.
type tagEntry struct {
	digest v1.Hash
	fresh  int64 // UnixNano
}

const tagKnownFor = 24 * time.Hour

// freshTag returns the digest the tag cache holds for key while fresh.
func (s *Service) freshTag(key []byte) (v1.Hash, bool) {
	e, ok := s.tags.getBytes(key)
	if !ok || s.o.Now().UnixNano() >= e.fresh {
		return v1.Hash{}, false
	}
	return e.digest, true
}

func (s *Service) tagKey(ref registry.Ref) string {
	var buf [keyBuf]byte
	return string(s.appendTagKey(buf[:0], &ref.Facts))
}

// appendTagKey appends the tag cache key of r, which names a tag:
// generation, registry (Docker Hub as docker.io), repository and tag.
func (s *Service) appendTagKey(b []byte, r *facts.Reference) []byte {
	return s.appendKey(b, "tag|", r, ':', r.Tag)
}

// appendKey appends a cache key: generation, kind, registry/repository, sep
// and last (the tag or the digest).
func (s *Service) appendKey(b []byte, kind string, r *facts.Reference, sep byte, last string) []byte {
	b = append(b, s.gen...)
	b = append(b, kind...)
	return appendName(b, r, sep, last)
}

// appendName appends registry/repository, sep and last.
func appendName(b []byte, r *facts.Reference, sep byte, last string) []byte {
	b = append(b, r.Registry...)
	b = append(b, '/')
	b = append(b, r.Repository...)
	b = append(b, sep)
	return append(b, last...)
}

// cachedTag returns the tag's descriptor when the tag cache holds it.
func (s *Service) cachedTag(ref registry.Ref) (v1.Hash, bool) {
	var buf [keyBuf]byte
	d, ok := s.freshTag(s.appendTagKey(buf[:0], &ref.Facts))
	s.o.Observer.ObserveCache("tag", ok)
	return d, ok
}

// appendFactsKey appends the facts cache key of r's repository and digest,
// under the current trust epoch.
func (s *Service) appendFactsKey(b []byte, r *facts.Reference, digest string) []byte {
	b = append(b, s.gen...)
	b = append(b, "facts|"...)
	b = strconv.AppendUint(b, s.trust.Load(), 10)
	return appendName(append(b, '|'), r, '@', digest)
}

// TrustChanged tells the Service that the keys or trusted roots changed
// (signature.Verifier.Epoch moved): facts hold the signatures the old ones
// verified, so every facts entry cached so far stops being used (they age
// out of the LRU), and fetches still running store theirs under the old
// epoch, where nothing reads them. Tags, references and negative entries do
// not depend on trust and stay.
func (s *Service) TrustChanged() { s.trust.Add(1) }

// appendHash appends h as its string form, algorithm:hex.
func appendHash(b []byte, h v1.Hash) []byte {
	b = append(b, h.Algorithm...)
	b = append(b, ':')
	return append(b, h.Hex...)
}

// describe returns what repository@digest describes, from the facts cache when
// present. The cached value carries no per-key fields (image, reference).
func (s *Service) describe(ctx context.Context, ref registry.Ref, digest string) (*facts.Facts, error) {
	var buf [keyBuf]byte
	kb := s.appendFactsKey(buf[:0], &ref.Facts, digest)
	if f, ok := s.facts.getBytes(kb); ok {
		s.o.Observer.ObserveCache("facts", true)
		return f, nil
	}
	s.o.Observer.ObserveCache("facts", false)
	key := string(kb)
	cached := func() (any, bool) { return s.facts.get(key) }
	v, err := s.flight(ctx, key, ref.Key, cached, func(fctx context.Context) (any, error) {
		f, err := s.fetchFacts(fctx, ref.Key, ref.Repository().Digest(digest))
		if err != nil {
			return nil, err
		}
		f.Normalize()
		f.Compact()
		if f.Digest == digest {
			// The same bytes as the end of the cache key, which stays as
			// long as f.
			f.Digest = key[len(key)-len(digest):]
		}
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
