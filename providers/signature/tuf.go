package signature

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tuf"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// maxTUFRedirects bounds redirects from a mirror (a CDN may redirect once).
const maxTUFRedirects = 3

// fetchTUFRoot runs a TUF update against r.Mirror (every metadata file
// verified from the initial root.json, the target checked against its
// length and hashes) and parses the trusted_root.json target. It runs when
// the Verifier is built and at each Refresh (every trust.refreshInterval):
// never per request. Cancelling ctx aborts the update.
//
// The mirror is the operator's choice, not a value from a request, so the
// registry SSRF guard does not apply; the client still has timeouts and
// follows only a few redirects.
func fetchTUFRoot(ctx context.Context, r TUFRoot, timeout time.Duration) (*root.TrustedRoot, error) {
	mirror := strings.TrimRight(r.Mirror, "/")
	u, err := url.Parse(mirror)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("mirror must be an http(s) URL, got %q", r.Mirror)
	}
	initial, err := initialTUFRoot(r.RootFile, mirror)
	if err != nil {
		return nil, err
	}
	f := fetcher.NewDefaultFetcher()
	f.SetHTTPUserAgent("imagegate")
	hc := tufHTTPClient(timeout)
	defer hc.CloseIdleConnections() // used for this one update only
	f.SetHTTPClient(ctxClient{ctx: ctx, c: hc})
	opts := &tuf.Options{
		Root:              initial,
		RepositoryBaseURL: mirror,
		CachePath:         r.CachePath,
		DisableLocalCache: r.CachePath == "",
		Fetcher:           f,
	}
	client, err := tuf.New(opts)
	if err != nil {
		return nil, fmt.Errorf("TUF update: %w", err)
	}
	tr, err := root.GetTrustedRoot(client)
	if err != nil {
		return nil, fmt.Errorf("TUF target trusted_root.json: %w", err)
	}
	return tr, nil
}

// ctxClient sends go-tuf's requests (made without a context) with ctx, so
// that a refresh stops when the server shuts down.
type ctxClient struct {
	ctx context.Context
	c   *http.Client
}

func (c ctxClient) Do(req *http.Request) (*http.Response, error) {
	return c.c.Do(req.WithContext(c.ctx))
}

// initialTUFRoot is the root.json the repository is first trusted with.
func initialTUFRoot(path, mirror string) ([]byte, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("rootFile: %w", err)
		}
		return b, nil
	}
	switch mirror {
	case tuf.DefaultMirror:
		return tuf.DefaultRoot(), nil
	case tuf.StagingMirror:
		return tuf.StagingRoot(), nil
	}
	return nil, errors.New("rootFile is required (an embedded root.json exists only for " + tuf.DefaultMirror + " and " + tuf.StagingMirror + ")")
}

func tufHTTPClient(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		IdleConnTimeout:       30 * time.Second,
		MaxIdleConns:          4,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Timeout:   timeout,
		Transport: tr,
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) >= maxTUFRedirects {
				return fmt.Errorf("stopped after %d redirects", maxTUFRedirects)
			}
			return nil
		},
	}
}
