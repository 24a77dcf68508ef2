package signature_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
)

// rotation is a Sigstore root rotation: images signed under the old
// instance and under the new one (new Fulcio CA, Rekor and CT log keys,
// TSA), each with one keyless bundle attached as a referrer.
type rotation struct {
	old, new           *signaturetest.Sigstore
	c                  *registry.Client
	oldImage, newImage string
}

func newRotation(t *testing.T) *rotation {
	t.Helper()
	r := &rotation{old: signaturetest.NewSigstore(t), new: signaturetest.NewSigstore(t)}
	reg := registrytest.New(t)
	r.c = client(t, reg.Host)
	sign := func(repo string, ss *signaturetest.Sigstore) string {
		d := reg.PushImage(t, repo, "v1", registrytest.Image{Created: time.Now()})
		image := reg.Host + "/" + repo + "@" + d.String()
		_, raw, err := r.c.Manifest(t.Context(), "k", mustDigest(t, image))
		if err != nil {
			t.Fatal(err)
		}
		desc := v1.Descriptor{MediaType: raw.MediaType, Size: raw.Size, Digest: d}
		signaturetest.AttachReferrer(t, reg.Host, repo, desc, ss.SignImage(t, release, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{}), signature.CosignSignPredicate)
		return image
	}
	r.oldImage = sign("acme/old", r.old)
	r.newImage = sign("acme/new", r.new)
	return r
}

// verifies reports whether image's keyless signature verifies with v, and
// fails the test on a result that is neither "verified" nor "not verified by
// the configured root" (a discovery error, a half-applied trust state).
func (r *rotation) verifies(t *testing.T, v *signature.Verifier, image string) bool {
	t.Helper()
	res, err := v.Check(t.Context(), r.c, image, mustDigest(t, image))
	if err != nil {
		t.Errorf("Check(%s) error = %v", image, err)
		return false
	}
	switch {
	case len(res.Signatures) == 1 && len(res.Errors) == 0 && res.Signatures[0].Signer.Subject == release.Subject:
		return true
	case len(res.Signatures) == 0 && len(res.Errors) == 1 && strings.Contains(res.Errors[0], "not verified by trusted root"):
		return false
	}
	t.Errorf("Check(%s) = signatures %+v, errors %q; want one verified or one not verified by the trusted root", image, res.Signatures, res.Errors)
	return false
}

// wantTrust checks which of the two instances v trusts now.
func (r *rotation) wantTrust(t *testing.T, v *signature.Verifier, when string, old, new bool) {
	t.Helper()
	if got := r.verifies(t, v, r.oldImage); got != old {
		t.Errorf("%s: signature under the old root verified = %t, want %t", when, got, old)
	}
	if got := r.verifies(t, v, r.newImage); got != new {
		t.Errorf("%s: signature under the new root verified = %t, want %t", when, got, new)
	}
}

// TestRefreshTUFRotation: the repository publishes a new trusted_root.json
// (targets, snapshot and timestamp re-signed, versions bumped); a signature
// made under the new root fails until Refresh, and verifies after it.
func TestRefreshTUFRotation(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		cache bool
	}{
		{desc: "in memory"},
		{desc: "cachePath", cache: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRotation(t)
			repo := signaturetest.NewTUFRepository(t, map[string][]byte{"trusted_root.json": r.old.TrustedRootJSON(t)})
			tr := signature.TUFRoot{Name: "sigstore-test", Mirror: repo.URL, RootFile: repo.WriteRoot(t, t.TempDir())}
			if tc.cache {
				tr.CachePath = t.TempDir()
			}
			v, err := signature.New(signature.Options{TUF: []signature.TUFRoot{tr}, TUFTimeout: 5 * time.Second}, nil)
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			r.wantTrust(t, v, "at startup", true, false)

			// Nothing published: a refresh changes nothing.
			before := repo.Requests()
			if err := v.Refresh(t.Context()); err != nil {
				t.Fatalf("Refresh() error = %v", err)
			}
			if repo.Requests() == before {
				t.Error("Refresh() did not contact the TUF mirror")
			}
			r.wantTrust(t, v, "after a refresh with nothing new", true, false)

			repo.PublishTarget(t, "trusted_root.json", r.new.TrustedRootJSON(t))
			r.wantTrust(t, v, "published, not refreshed", true, false)
			if err := v.Refresh(t.Context()); err != nil {
				t.Fatalf("Refresh() after publishing error = %v", err)
			}
			if err := v.Status(); err != nil {
				t.Errorf("Status() = %v, want nil", err)
			}
			r.wantTrust(t, v, "refreshed", false, true)
		})
	}
}

// TestRefreshKeepsLastGoodTUFRoot: a mirror serving content its signed
// metadata does not vouch for, or a mirror that is down, fails the refresh;
// the last good root keeps verifying and the error is kept for Status until
// a refresh succeeds.
func TestRefreshKeepsLastGoodTUFRoot(t *testing.T) {
	r := newRotation(t)
	repo := signaturetest.NewTUFRepository(t, map[string][]byte{"trusted_root.json": r.old.TrustedRootJSON(t)})
	v, err := signature.New(signature.Options{
		TUF:        []signature.TUFRoot{{Name: "corp", Mirror: repo.URL, RootFile: repo.WriteRoot(t, t.TempDir())}},
		TUFTimeout: 5 * time.Second,
	}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	entry := []string{"trust.tuf[0]", `"corp"`, "mirror " + repo.URL}

	for _, tc := range []struct {
		desc  string
		fault func()
		want  []string
	}{
		{
			desc:  "tampered target",
			fault: func() { repo.TamperTarget(t, "trusted_root.json", r.new.TrustedRootJSON(t)) },
			want:  []string{"trusted_root.json"},
		},
		{
			desc:  "mirror down",
			fault: func() { repo.SetDown(true) },
			want:  []string{"503"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			tc.fault()
			err := v.Refresh(t.Context())
			if err == nil {
				t.Fatal("Refresh() error = nil")
			}
			t.Logf("Refresh() error = %v", err)
			for _, w := range append(entry, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Refresh() error = %v, want it to mention %q", err, w)
				}
			}
			if st := v.Status(); st == nil || st.Error() != err.Error() {
				t.Errorf("Status() = %v, want %v", st, err)
			}
			r.wantTrust(t, v, "after the failed refresh", true, false)
		})
	}

	// The mirror recovers with a properly signed new version.
	repo.SetDown(false)
	repo.PublishTarget(t, "trusted_root.json", r.new.TrustedRootJSON(t))
	if err := v.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() after recovery error = %v", err)
	}
	if err := v.Status(); err != nil {
		t.Errorf("Status() after a good refresh = %v, want nil", err)
	}
	r.wantTrust(t, v, "after recovery", false, true)
}

// TestRefreshTrustedRootFile: a trustedRoots file replaced on disk is used
// after Refresh; one replaced by garbage is refused, naming the entry, and
// the root loaded before keeps verifying. Keys are reloaded alike.
func TestRefreshTrustedRootFile(t *testing.T) {
	r := newRotation(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "trusted_root.json")
	write := func(b []byte) {
		t.Helper()
		// As a kubelet updates a mounted ConfigMap: a new file renamed in.
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(r.old.TrustedRootJSON(t))
	v, err := signature.New(signature.Options{TrustedRoots: map[string]string{"corp": path}}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	r.wantTrust(t, v, "at startup", true, false)
	epoch := v.Epoch()
	if err := v.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	if v.Epoch() != epoch {
		t.Errorf("Epoch() moved from %d to %d after a refresh that loaded the same root", epoch, v.Epoch())
	}

	write(r.new.TrustedRootJSON(t))
	r.wantTrust(t, v, "replaced, not refreshed", true, false)
	if err := v.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	r.wantTrust(t, v, "replaced and refreshed", false, true)
	if v.Epoch() == epoch {
		t.Errorf("Epoch() stayed %d after a refresh that replaced the root", epoch)
	}
	epoch = v.Epoch()
	defer func() {
		if v.Epoch() != epoch {
			t.Errorf("Epoch() moved from %d to %d after refreshes that failed", epoch, v.Epoch())
		}
	}()

	for _, tc := range []struct {
		desc    string
		replace func()
	}{
		{desc: "garbage", replace: func() { write([]byte(`{"mediaType": "nonsense`)) }},
		{desc: "removed", replace: func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			tc.replace()
			err := v.Refresh(t.Context())
			if err == nil || !strings.Contains(err.Error(), "trust.trustedRoots.corp "+path) {
				t.Fatalf("Refresh() error = %v, want it to name trust.trustedRoots.corp and %s", err, path)
			}
			if v.Status() == nil {
				t.Error("Status() = nil after a failed refresh")
			}
			r.wantTrust(t, v, "after the failed refresh", false, true)
		})
	}
}

// TestRefreshDuringVerification swaps the trusted root back and forth while
// verifications run (run with -race): every result is either verified or
// cleanly not verified, never a mix, and the last refresh decides.
func TestRefreshDuringVerification(t *testing.T) {
	r := newRotation(t)
	dir := t.TempDir()
	oldPath, newPath := r.old.WriteTrustedRoot(t, t.TempDir()), r.new.WriteTrustedRoot(t, t.TempDir())
	path := filepath.Join(dir, "trusted_root.json")
	point := func(target string) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	point(oldPath)
	v, err := signature.New(signature.Options{TrustedRoots: map[string]string{"corp": path}}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}

	var (
		wg   sync.WaitGroup
		stop = make(chan struct{})
		mu   sync.Mutex
		seen = map[bool]int{}
	)
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ok := r.verifies(t, v, r.oldImage)
				mu.Lock()
				seen[ok]++
				mu.Unlock()
			}
		})
	}
	for i := range 20 {
		if i%2 == 0 {
			point(newPath)
		} else {
			point(oldPath)
		}
		if err := v.Refresh(t.Context()); err != nil {
			t.Errorf("Refresh() #%d error = %v", i, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("old-root signature verified/not verified during refreshes: %d/%d", seen[true], seen[false])
	if seen[true]+seen[false] == 0 {
		t.Error("no verification ran during the refreshes")
	}
	// 20 refreshes, the last one (i = 19) back to the old root.
	r.wantTrust(t, v, "after the last refresh", true, false)
}

// TestRefreshRollbackWithCache: with cachePath the TUF client remembers the
// metadata versions it trusted, so a mirror replaying the timestamp from
// before a rotation is refused and the rotated root stays in use.
func TestRefreshRollbackWithCache(t *testing.T) {
	r := newRotation(t)
	repo := signaturetest.NewTUFRepository(t, map[string][]byte{"trusted_root.json": r.old.TrustedRootJSON(t)})
	v, err := signature.New(signature.Options{
		TUF:        []signature.TUFRoot{{Name: "corp", Mirror: repo.URL, RootFile: repo.WriteRoot(t, t.TempDir()), CachePath: t.TempDir()}},
		TUFTimeout: 5 * time.Second,
	}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	repo.PublishTarget(t, "trusted_root.json", r.new.TrustedRootJSON(t))
	if err := v.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	r.wantTrust(t, v, "rotated", false, true)

	repo.RollBack(t)
	err = v.Refresh(t.Context())
	if err == nil || !strings.Contains(err.Error(), "trust.tuf[0]") {
		t.Fatalf("Refresh() against a rolled-back mirror error = %v, want a refusal naming trust.tuf[0]", err)
	}
	t.Logf("Refresh() error = %v", err)
	r.wantTrust(t, v, "after the rollback attempt", false, true)
}
