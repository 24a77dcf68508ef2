package registry_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry"
)

// fuzzRegistry serves whatever content a fuzz input puts in it, by digest,
// for one repository, and counts requests.
type fuzzRegistry struct {
	mu        sync.Mutex
	manifests map[string]served // by digest
	blobs     map[string][]byte
	referrers []byte
	requests  int
}

type served struct {
	body      []byte
	mediaType string
}

func newFuzzRegistry(f *testing.F) (*fuzzRegistry, string) {
	r := &fuzzRegistry{}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	f.Cleanup(srv.Close)
	return r, strings.TrimPrefix(srv.URL, "http://")
}

func (r *fuzzRegistry) set(manifests map[string]served, blobs map[string][]byte, referrers []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests, r.blobs, r.referrers, r.requests = manifests, blobs, referrers, 0
}

func (r *fuzzRegistry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

func (r *fuzzRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	p := req.URL.Path
	notFound := func() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}`)
	}
	write := func(body []byte, mediaType, digest string) {
		w.Header().Set("Content-Type", mediaType)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if digest != "" {
			w.Header().Set("Docker-Content-Digest", digest)
		}
		if req.Method != http.MethodHead {
			w.Write(body)
		}
	}
	switch {
	case p == "/v2/":
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(p, "/v2/demo/app/manifests/"):
		m, ok := r.manifests[strings.TrimPrefix(p, "/v2/demo/app/manifests/")]
		if !ok {
			notFound()
			return
		}
		write(m.body, m.mediaType, strings.TrimPrefix(p, "/v2/demo/app/manifests/"))
	case strings.HasPrefix(p, "/v2/demo/app/blobs/"):
		b, ok := r.blobs[strings.TrimPrefix(p, "/v2/demo/app/blobs/")]
		if !ok {
			notFound()
			return
		}
		write(b, "application/octet-stream", "")
	case strings.HasPrefix(p, "/v2/demo/app/referrers/") && r.referrers != nil:
		write(r.referrers, "application/vnd.oci.image.index.v1+json", "")
	default:
		notFound()
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// knownCode fails unless err is a *facts.Error with one of the codes the
// server sorts into per-key errors and transient omissions.
func knownCode(t *testing.T, err error) {
	t.Helper()
	var fe *facts.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *facts.Error", err, err)
	}
	switch fe.Code {
	case facts.CodeInvalidContent, facts.CodeNotFound, facts.CodeUnavailable, facts.CodeUnauthorized:
	default:
		t.Fatalf("error %v has code %q", err, fe.Code)
	}
	if strings.TrimSpace(err.Error()) == "" {
		t.Fatal("error without a message")
	}
}

var fuzzLimits = registry.Limits{ManifestBytes: 64 << 10, ConfigBytes: 64 << 10, Children: 4}

// FuzzDescribe: Client.Describe, the manifest, index and image config
// parsing imagegate applies to registry content. The input is the top
// manifest's media type and body, one child manifest and one config blob;
// in the bodies, @CHILD@/@CHILDSIZE@ and @CONFIG@/@CONFIGSIZE@ become the
// digest and size of the child and the config, so the fuzzer gets past
// digest verification. Any content yields facts or a *facts.Error with a
// known code; facts describe exactly the digest asked for, within the
// limits (platform count, RFC 3339 creation time, config digest); the
// registry sees a bounded number of requests.
// Seeds: testdata/fuzz/FuzzDescribe (shapes of real OCI and Docker
// manifests, indexes with attestation manifests, artifacts).
func FuzzDescribe(f *testing.F) {
	reg, host := newFuzzRegistry(f)
	c := newClient(f, host, registry.Options{Limits: fuzzLimits})
	f.Fuzz(func(t *testing.T, mediaType string, top, child, config []byte) {
		confDigest := sha(config)
		fill := func(b []byte, repl ...string) []byte {
			return []byte(strings.NewReplacer(repl...).Replace(string(b)))
		}
		child = fill(child, "@CONFIG@", confDigest, "@CONFIGSIZE@", strconv.Itoa(len(config)))
		childDigest := sha(child)
		top = fill(top, "@CHILD@", childDigest, "@CHILDSIZE@", strconv.Itoa(len(child)), "@CONFIG@", confDigest, "@CONFIGSIZE@", strconv.Itoa(len(config)))
		topDigest := sha(top)
		reg.set(map[string]served{
			topDigest:   {body: top, mediaType: mediaType},
			childDigest: {body: child, mediaType: "application/vnd.oci.image.manifest.v1+json"},
		}, map[string][]byte{confDigest: config}, nil)
		d, err := name.NewDigest(host+"/demo/app@"+topDigest, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fa, err := c.Describe(ctx, "fuzz", d)
		if n := reg.count(); n > 8+3*fuzzLimits.Children {
			t.Fatalf("Describe made %d registry requests for one image (limit %d children)", n, fuzzLimits.Children)
		}
		if err != nil {
			knownCode(t, err)
			return
		}
		if fa.Digest != topDigest || fa.Size != int64(len(top)) {
			t.Fatalf("facts for %s (%d bytes), asked for %s (%d bytes)", fa.Digest, fa.Size, topDigest, len(top))
		}
		if len(fa.Platforms) > fuzzLimits.Children {
			t.Fatalf("%d platforms, over the limit of %d", len(fa.Platforms), fuzzLimits.Children)
		}
		configs := []*facts.Config{fa.Config}
		for _, p := range fa.Platforms {
			if _, err := v1.NewHash(p.Digest); err != nil {
				t.Fatalf("platform digest %q: %v", p.Digest, err)
			}
			configs = append(configs, p.Config)
		}
		for _, cf := range configs {
			if cf == nil {
				continue
			}
			if cf.Digest != confDigest || cf.Labels == nil {
				t.Fatalf("config %+v: want digest %s and non-nil labels", cf, confDigest)
			}
			if cf.Created != "" {
				if _, err := time.Parse(time.RFC3339, cf.Created); err != nil {
					t.Fatalf("config created %q is not RFC 3339: %v", cf.Created, err)
				}
			}
		}
	})
}

// FuzzReferrers: Client.Referrers parsing a registry's referrers index.
// Any body yields descriptors with valid digests, or a *facts.Error with a
// known code. Seeds: testdata/fuzz/FuzzReferrers (referrers responses
// recorded from real registries).
func FuzzReferrers(f *testing.F) {
	reg, host := newFuzzRegistry(f)
	c := newClient(f, host, registry.Options{Limits: fuzzLimits})
	d, err := name.NewDigest(host+"/demo/app@"+sha([]byte("image")), name.Insecure)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		reg.set(nil, nil, body)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		descs, err := c.Referrers(ctx, "fuzz", d)
		if err != nil {
			knownCode(t, err)
			return
		}
		for _, desc := range descs {
			if _, err := v1.NewHash(desc.Digest.String()); err != nil {
				t.Fatalf("referrer digest %q: %v", desc.Digest, err)
			}
		}
	})
}
