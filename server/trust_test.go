package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/test/bench/benchfix"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type status struct{ err error }

func (s status) Status() error { return s.err }

// TestTrustRefreshLoop runs the refresh loop against a real TUF mirror that
// goes down and comes back: failures are counted, logged with the entry and
// mirror, and shown in /readyz, which stays 200; a good refresh clears the
// detail; stop ends the loop.
func TestTrustRefreshLoop(t *testing.T) {
	ss := signaturetest.NewSigstore(t)
	repo := signaturetest.NewTUFRepository(t, map[string][]byte{"trusted_root.json": ss.TrustedRootJSON(t)})
	sv, err := signature.New(signature.Options{
		TUF:        []signature.TUFRoot{{Name: "corp", Mirror: repo.URL, RootFile: repo.WriteRoot(t, t.TempDir())}},
		TUFTimeout: 5 * time.Second,
	}, nil)
	if err != nil {
		t.Fatalf("signature.New() error = %v", err)
	}
	m := NewMetrics()
	logs := &syncBuffer{}
	h := New(Deps{Metrics: m, Status: func() map[string]string { return readyDetails(status{}, sv) }})
	get := func(path string) (int, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	count := func(result string) int {
		t.Helper()
		_, body := get("/metrics")
		m := regexp.MustCompile(`(?m)^imagegate_trust_refreshes_total\{result="` + result + `"\} (\d+)$`).FindStringSubmatch(body)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	repo.SetDown(true)
	stop := refreshTrust(t.Context(), sv, 20*time.Millisecond, slog.New(slog.NewJSONHandler(logs, nil)), m, func() {})
	waitFor("a failed refresh to be counted", func() bool { return count("error") >= 1 })

	code, body := get("/readyz")
	var ready map[string]string
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("GET /readyz: %v\n%s", err, body)
	}
	if code != http.StatusOK || ready["status"] != "ok" {
		t.Errorf("GET /readyz = %d %s, want 200 ok: a failed refresh leaves the previous roots verifying", code, body)
	}
	for _, want := range []string{"refresh failed", "trust.tuf[0]", `"corp"`, repo.URL, "503"} {
		if !strings.Contains(ready["trust"], want) {
			t.Errorf("/readyz trust = %q, want it to mention %q", ready["trust"], want)
		}
	}
	// The refresh is counted just before it is logged: wait for the log.
	logged := func() bool {
		l := logs.String()
		return strings.Contains(l, "trust refresh failed") && strings.Contains(l, `trust.tuf[0] (name \"corp\", mirror `+repo.URL)
	}
	for deadline := time.Now().Add(5 * time.Second); !logged() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !logged() {
		t.Errorf("logs = %s, want the failed refresh with its entry and mirror", logs.String())
	}

	repo.SetDown(false)
	waitFor("a good refresh to be counted", func() bool { return count("ok") >= 1 })
	waitFor("the /readyz trust detail to clear", func() bool {
		_, body := get("/readyz")
		return !strings.Contains(body, `"trust"`)
	})
	if _, body := get("/metrics"); !regexp.MustCompile(`(?m)^imagegate_trust_last_success_timestamp_seconds \d\.\d+e\+09$`).MatchString(body) {
		t.Errorf("/metrics lacks a recent imagegate_trust_last_success_timestamp_seconds")
	}

	stop()
	// A request the stopped refresh had already sent may still reach the
	// mirror's handler (the client gave up, the server had not seen it
	// yet): let those land, then count. A loop still running at a 20ms
	// interval would make several requests in the next 100ms.
	time.Sleep(50 * time.Millisecond)
	n := repo.Requests()
	time.Sleep(100 * time.Millisecond)
	if got := repo.Requests(); got != n {
		t.Errorf("the mirror got %d requests after stop, want none", got-n)
	}
}

func TestReadyDetails(t *testing.T) {
	for _, tc := range []struct {
		desc          string
		policy, trust error
		want          []string
	}{
		{desc: "all good"},
		{desc: "trust", trust: errors.New(`trust.tuf[0] (name "corp", mirror https://tuf.corp.example): TUF update: boom`), want: []string{"trust"}},
		{desc: "both", policy: errors.New("x.rego:1: parse error"), trust: errors.New("trust.trustedRoots.corp /etc/x.json: bad"), want: []string{"policy", "trust"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := readyDetails(status{tc.policy}, status{tc.trust})
			if len(got) != len(tc.want) {
				t.Fatalf("readyDetails() = %v, want keys %v", got, tc.want)
			}
			for _, k := range tc.want {
				if !strings.Contains(got[k], "failed") {
					t.Errorf("readyDetails()[%q] = %q, want a failure", k, got[k])
				}
			}
			if tc.trust != nil && !strings.HasSuffix(got["trust"], tc.trust.Error()) {
				t.Errorf("readyDetails()[trust] = %q, want it to end with the refresh error", got["trust"])
			}
		})
	}
}

// TestTrustChangeDropsCachedFacts: facts cached while a trusted root was in
// force are not served once a refresh replaced that root (a rotated or
// withdrawn root must not keep an image "signed" for factsTTL), while
// refreshes that load the same material keep the cache warm.
func TestTrustChangeDropsCachedFacts(t *testing.T) {
	im := benchfix.Signed(t, 1)
	dir := t.TempDir()
	root := filepath.Join(dir, "trusted_root.json")
	replace := func(b []byte) {
		t.Helper()
		// As a kubelet updates a mounted ConfigMap: a new file renamed in.
		if err := os.WriteFile(filepath.Join(dir, ".tmp"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, ".tmp"), root); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(im.TrustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	replace(b)
	cfg := im.Config(t)
	cfg.Trust.TrustedRoots = map[string]string{"test": root}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	lk, sv, err := newLookup(cfg, m, 1)
	if err != nil {
		t.Fatal(err)
	}
	key := im.Keys[0]
	lookupFacts := func() *facts.Facts {
		t.Helper()
		f, err := lk.Facts(t.Context(), key)
		if err != nil {
			t.Fatalf("Facts(%s) error = %v", key, err)
		}
		return f
	}
	if f := lookupFacts(); len(f.Signatures) != 1 {
		t.Fatalf("before any refresh: %d verified signatures (errors %q), want 1", len(f.Signatures), f.VerificationErrors)
	}
	im.Reg.ResetCounts()

	logs := &syncBuffer{}
	stop := refreshTrust(t.Context(), sv, 20*time.Millisecond, slog.New(slog.NewJSONHandler(logs, nil)), m, lk.TrustChanged)
	defer stop()
	waitLogged := func(msg string, n int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for strings.Count(logs.String(), msg) < n {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %d log lines %q; logs:\n%s", n, msg, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	waitLogged("trust refreshed, unchanged", 2)
	if f := lookupFacts(); len(f.Signatures) != 1 || im.Reg.Total() != 0 {
		t.Errorf("after unchanged refreshes: %d verified signatures, %d registry requests; want 1 from the cache (0 requests)", len(f.Signatures), im.Reg.Total())
	}

	replace(signaturetest.NewSigstore(t).TrustedRootJSON(t))
	waitLogged("cached facts dropped", 1)
	f := lookupFacts()
	if len(f.Signatures) != 0 || !strings.Contains(strings.Join(f.VerificationErrors, "; "), "not verified by trusted root") {
		t.Errorf("after the root was replaced: signatures %+v, errors %q; want none verified, and the old signature reported as not verified by the trusted root", f.Signatures, f.VerificationErrors)
	}
	if im.Reg.Total() == 0 {
		t.Error("after the root was replaced the facts came from the cache (no registry request)")
	}
}
