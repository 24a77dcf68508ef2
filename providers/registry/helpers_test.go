package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/guard"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

// fastRetry keeps retried failures quick: two attempts, 1ms apart.
var fastRetry = remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 2}

// newGuard allows, and reaches over plain HTTP on loopback, exactly hosts.
func newGuard(t testing.TB, hosts ...string) *guard.Guard {
	t.Helper()
	g, err := guard.New(guard.Options{Allow: hosts, Insecure: hosts, Private: hosts})
	if err != nil {
		t.Fatalf("guard.New(%v): %v", hosts, err)
	}
	return g
}

// newClient builds a Client for a registry at host; o.Guard defaults to a
// guard for host alone and o.Retry to fastRetry.
func newClient(t testing.TB, host string, o registry.Options) *registry.Client {
	t.Helper()
	if o.Guard == nil {
		o.Guard = newGuard(t, host)
	}
	if o.Retry.Steps == 0 {
		o.Retry = fastRetry
	}
	c, err := registry.New(o)
	if err != nil {
		t.Fatalf("registry.New: %v", err)
	}
	return c
}

func mustParse(t testing.TB, key string, insecure func(string) bool) registry.Ref {
	t.Helper()
	ref, err := registry.Parse(key, insecure)
	if err != nil {
		t.Fatalf("Parse(%q): %v", key, err)
	}
	return ref
}

// describeKey does what the lookup service does for one key, without caches:
// check, resolve the tag unless the key pins a digest, describe the digest.
func describeKey(ctx context.Context, c *registry.Client, insecure func(string) bool, key string) (*facts.Facts, error) {
	ref, err := registry.Parse(key, insecure)
	if err != nil {
		return nil, err
	}
	if err := c.Check(ref); err != nil {
		return nil, err
	}
	var d name.Digest
	if ref.Digest != nil {
		d = *ref.Digest
	} else {
		desc, err := c.Resolve(ctx, key, *ref.Tag, false) // first sight, as the lookup service
		if err != nil {
			return nil, err
		}
		d = ref.Repository().Digest(desc.Digest.String())
	}
	return c.Describe(ctx, key, d)
}

// checkCode fails unless err carries want ("" = no error), and checks that
// transient codes and only they match facts.ErrTransient.
func checkCode(t testing.TB, what string, err error, want facts.Code) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("%s error = %v, want none", what, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s error = nil, want %s", what, want)
	}
	if got := facts.CodeOf(err); got != want {
		t.Fatalf("%s error = %v (code %s), want code %s", what, err, got, want)
	}
	var fe *facts.Error
	if !errors.As(err, &fe) {
		t.Errorf("%s error = %#v, want a *facts.Error", what, err)
	}
	if got, wantT := errors.Is(err, facts.ErrTransient), !want.Definitive(); got != wantT {
		t.Errorf("%s: errors.Is(err, ErrTransient) = %v, want %v (err %v)", what, got, wantT, err)
	}
}

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// proxiedClient puts a reverse proxy in front of reg whose modify rewrites
// the registry's answers, and returns the proxy's host with a client for it.
func proxiedClient(t testing.TB, reg *registrytest.Registry, modify func(*http.Response) error) (string, *registry.Client) {
	t.Helper()
	target, _ := url.Parse(reg.Server.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = modify
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	return host, newClient(t, host, registry.Options{})
}
