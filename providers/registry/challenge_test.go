package registry_test

import (
	"strings"
	"testing"

	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

func anyHost(string) bool { return true }

// TestPingRemembered: a registry contacted before is not pinged again for
// a new repository's handshake; a bearer registry then costs only the
// repository's token.
func TestPingRemembered(t *testing.T) {
	for _, bearer := range []bool{false, true} {
		name := "anonymous"
		if bearer {
			name = "bearer"
		}
		t.Run(name, func(t *testing.T) {
			reg := registrytest.New(t)
			for _, repo := range []string{"team/a", "team/b"} {
				reg.PushImage(t, repo, "v1", registrytest.Image{Created: created})
			}
			reg.RequireToken(bearer)
			c := newClient(t, reg.Host, registry.Options{})
			reg.ResetCounts() // the pushes pinged too
			if _, err := describeKey(t.Context(), c, anyHost, reg.Host+"/team/a:v1"); err != nil {
				t.Fatal(err)
			}
			if n := reg.Count("GET ping"); n != 1 {
				t.Errorf("first contact: %d pings, want 1", n)
			}
			reg.ResetCounts()
			if _, err := describeKey(t.Context(), c, anyHost, reg.Host+"/team/b:v1"); err != nil {
				t.Fatal(err)
			}
			if n := reg.Count("GET ping"); n != 0 {
				t.Errorf("a new repository of a registry contacted before: %d pings, want 0", n)
			}
			wantTokens := 0
			if bearer {
				wantTokens = 1
			}
			if n := reg.CountPath("GET other", "/token"); n != wantTokens {
				t.Errorf("a new repository: %d token requests, want %d", n, wantTokens)
			}
		})
	}
}

// TestChallengeChange: a registry that changes its auth challenge (here from
// none to bearer, and back) is noticed on the first request it refuses: the
// remembered ping answer is dropped, the registry pinged again, and the
// request made once more with a fresh handshake. Lookups keep working.
func TestChallengeChange(t *testing.T) {
	reg := registrytest.New(t)
	for _, repo := range []string{"team/a", "team/b", "team/c"} {
		reg.PushImage(t, repo, "v1", registrytest.Image{Created: created})
	}
	c := newClient(t, reg.Host, registry.Options{})
	if _, err := describeKey(t.Context(), c, anyHost, reg.Host+"/team/a:v1"); err != nil {
		t.Fatal(err)
	}

	reg.RequireToken(true)
	for _, repo := range []string{"team/b", "team/a"} {
		reg.ResetCounts()
		key := reg.Host + "/" + repo + ":v1"
		if _, err := describeKey(t.Context(), c, anyHost, key); err != nil {
			t.Fatalf("after the registry started asking for a token: %s: %v", key, err)
		}
		if repo == "team/b" {
			// 401 (the remembered answer said no auth) → ping → token → 200.
			if n := reg.Count("GET ping"); n != 1 {
				t.Errorf("%s: %d pings, want 1 (the changed challenge noticed at once)", key, n)
			}
			if n := reg.CountPath("GET manifests", "/manifests/v1"); n != 2 {
				t.Errorf("%s: %d GETs of the tag, want 2 (refused, then with a token)", key, n)
			}
		} else if n := reg.Count("GET ping"); n != 0 {
			// team/a's state was renewed with the registry's: its new
			// handshake uses the fresh answer.
			t.Errorf("%s: %d pings, want 0", key, n)
		}
	}

	reg.RequireToken(false)
	reg.ResetCounts()
	if _, err := describeKey(t.Context(), c, anyHost, reg.Host+"/team/c:v1"); err != nil {
		t.Fatalf("after the registry stopped asking for a token: %v", err)
	}
}

// TestRememberedChallengeNeverCrossesHosts: ping answers are kept per
// registry host, so one registry's challenge (and the credential sent to
// its token realm) is never applied to another: the second registry is
// pinged itself, and no request to it ever carries a credential, also when
// it starts asking for a token and the client re-pings and retries.
func TestRememberedChallengeNeverCrossesHosts(t *testing.T) {
	x := registrytest.New(t)
	x.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	x.RequireToken(true)
	y := registrytest.New(t)
	for _, repo := range []string{"team/app", "team/other"} {
		y.PushImage(t, repo, "v1", registrytest.Image{Created: created})
	}
	dir := t.TempDir()
	k := mustKeychain(t, "", []registry.Credential{credFiles(t, dir, x.Host, "alice", "s3cret")})
	c := newClient(t, x.Host, registry.Options{Guard: newGuard(t, x.Host, y.Host), Keychain: k})

	if _, err := describeKey(t.Context(), c, anyHost, x.Host+"/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	basic := false
	for _, a := range x.Authorizations() {
		basic = basic || strings.Contains(a, "Basic ")
	}
	if !basic {
		t.Fatalf("x never saw its credential (%q): the test does not test a credential", x.Authorizations())
	}
	y.ResetCounts()
	if _, err := describeKey(t.Context(), c, anyHost, y.Host+"/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	if n := y.Count("GET ping"); n != 1 {
		t.Errorf("y: %d pings, want 1 (its own challenge, not x's)", n)
	}
	y.RequireToken(true)
	if _, err := describeKey(t.Context(), c, anyHost, y.Host+"/team/other:v1"); err != nil {
		t.Fatal(err)
	}
	for _, a := range y.Authorizations() {
		if !strings.HasPrefix(strings.SplitN(a, ": ", 2)[1], "Bearer registrytest-token") {
			t.Errorf("y received %q: a credential (only y's own anonymous token may reach y)", a)
		}
	}
}
