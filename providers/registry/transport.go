package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// limitTransport bounds every response body by the kind of request and tells
// the observer about each request. It sits below go-containerregistry's auth
// and retry layers, so it sees every hop, token fetches included.
type limitTransport struct {
	next     http.RoundTripper
	limits   Limits
	observer Observer
}

const otherBodyLimit = 1 << 20 // token, ping and error bodies

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	op, limit := t.classify(req)
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if t.observer != nil {
		result := "error"
		if err == nil {
			result = strconv.Itoa(resp.StatusCode)
		}
		t.observer.ObserveRegistryRequest(op, result, time.Since(start))
	}
	observeAuth(req, op, resp, err)
	if err != nil {
		return nil, err
	}
	if op == "manifest_get" {
		if c, ok := req.Context().Value(digestHeaderKey{}).(*string); ok {
			*c = resp.Header.Get("Docker-Content-Digest")
		}
	}
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %w (%d bytes announced, limit %d)", req.Method, req.URL.Redacted(), errTooLarge, resp.ContentLength, limit)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: limit, what: req.Method + " " + req.URL.Redacted(), limit: limit}
	return resp, nil
}

// bodyLimitKey carries a caller's own bound for blob bodies (see
// withBodyLimit).
type bodyLimitKey struct{}

// withBodyLimit makes the limiting transport bound the blob bodies fetched
// with ctx by max instead of Limits.ConfigBytes: Blob's callers (signature
// bundles and payloads, limits.bundleBytes) have their own limit, which may
// be the larger one.
func withBodyLimit(ctx context.Context, max int64) context.Context {
	return context.WithValue(ctx, bodyLimitKey{}, max)
}

// digestHeaderKey carries a *string that receives the Docker-Content-Digest
// header of the manifest GET made with the context (the last answer, after
// retries and auth): ggcr does not check it for tags (see withDigestHeader).
type digestHeaderKey struct{}

func withDigestHeader(ctx context.Context, into *string) context.Context {
	return context.WithValue(ctx, digestHeaderKey{}, into)
}

func (t *limitTransport) classify(req *http.Request) (op string, limit int64) {
	p := req.URL.Path
	switch {
	case strings.Contains(p, "/manifests/"):
		if req.Method == http.MethodHead {
			return "manifest_head", t.limits.ManifestBytes
		}
		return "manifest_get", t.limits.ManifestBytes
	case strings.Contains(p, "/blobs/"):
		if max, ok := req.Context().Value(bodyLimitKey{}).(int64); ok {
			return "blob_get", max
		}
		return "blob_get", t.limits.ConfigBytes
	case strings.Contains(p, "/referrers/"):
		return "referrers", t.limits.ManifestBytes
	case strings.HasSuffix(p, "/tags/list"):
		return "tags", t.limits.ManifestBytes
	case p == "/v2/" || p == "/v2":
		return "ping", otherBodyLimit
	case strings.HasPrefix(p, "/v2/"):
		return "other", otherBodyLimit
	}
	return "token", otherBodyLimit
}

// limitedBody fails a read that goes past the limit instead of truncating, so
// an oversized body is an error, never silently cut content.
type limitedBody struct {
	rc    io.ReadCloser
	left  int64
	limit int64
	what  string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Probe one byte: exactly-at-limit bodies are fine.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%s: %w (limit %d bytes)", b.what, errTooLarge, b.limit)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
