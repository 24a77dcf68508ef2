package registry

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// bodies keeps, briefly, manifests read by a GET of a tag, for the Describe
// of the digest that follows a tag's first resolution: one round trip gives
// the digest and the body. Entries are content-addressed (stored under the
// sha256 of the body, checked again when taken), per repository (content
// readable in one repository says nothing about another), taken once, and
// bounded in number, bytes and age: it is a hand-over between two calls, not
// a cache (the facts cache is the cache).
type bodies struct {
	mu       sync.Mutex
	ll       *list.List // of *storedBody, newest first
	m        map[string]*list.Element
	size     int64
	maxBytes int64
	maxItems int
	ttl      time.Duration
	now      func() time.Time
}

type storedBody struct {
	key       string
	body      []byte
	mediaType types.MediaType
	expires   time.Time
}

const (
	bodiesMaxBytes = 16 << 20
	bodiesMaxItems = 256
	bodiesTTL      = 30 * time.Second
)

func newBodies() *bodies {
	return &bodies{ll: list.New(), m: map[string]*list.Element{}, maxBytes: bodiesMaxBytes, maxItems: bodiesMaxItems, ttl: bodiesTTL, now: time.Now}
}

// sha256Digest returns "sha256:<hex>" of b.
func sha256Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// put keeps body as the content of repo@sha256(body).
func (s *bodies) put(repo string, body []byte, mt types.MediaType) {
	if int64(len(body)) > s.maxBytes/4 {
		return // a large manifest is fetched again rather than crowding out the rest
	}
	key := repo + "@" + sha256Digest(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.m[key]; ok {
		s.remove(el)
	}
	s.m[key] = s.ll.PushFront(&storedBody{key: key, body: body, mediaType: mt, expires: s.now().Add(s.ttl)})
	s.size += int64(len(body))
	for s.ll.Len() > s.maxItems || s.size > s.maxBytes {
		s.remove(s.ll.Back())
	}
}

// take returns and forgets the body kept for repo@digest, if any and fresh.
// The body is checked against the digest again: what is handed out is
// exactly the content the digest names.
func (s *bodies) take(repo, digest string) ([]byte, types.MediaType, bool) {
	s.mu.Lock()
	el, ok := s.m[repo+"@"+digest]
	if ok {
		s.remove(el)
	}
	s.mu.Unlock()
	if !ok {
		return nil, "", false
	}
	b := el.Value.(*storedBody)
	if !s.now().Before(b.expires) || sha256Digest(b.body) != digest {
		return nil, "", false
	}
	return b.body, b.mediaType, true
}

func (s *bodies) remove(el *list.Element) {
	b := el.Value.(*storedBody)
	s.ll.Remove(el)
	delete(s.m, b.key)
	s.size -= int64(len(b.body))
}

func (s *bodies) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ll.Len()
}
