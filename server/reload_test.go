package server_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagegate/imagegate/server/certs"
	"github.com/imagegate/imagegate/server/config"
)

// reviewPolicy is a policy.dir entrypoint answering every review with reason.
func reviewPolicy(allowed bool, reason string) string {
	return fmt.Sprintf("package imagegate.review\n\ndecision := {\"allowed\": %t, \"reason\": %q}\n", allowed, reason)
}

// TestReloadUnderLoad: while clients keep /v1/imagereview and
// /v1/externaldata/facts busy (on kept-alive connections and on a new
// connection per request), (a) a new valid policy replaces the old one
// with no failed request and decisions switch for good; (b) a broken policy
// fails no request, the last good policy keeps answering and /readyz names
// the error; (c) the serving certificate and key are rotated on disk with no
// failed request, and new connections get the new certificate.
func TestReloadUnderLoad(t *testing.T) {
	policyDir := t.TempDir()
	policyFile := filepath.Join(policyDir, "review.rego")
	writeFile(t, policyFile, reviewPolicy(false, "policy A"))
	h := start(t, nil, func(c *config.Config) {
		c.Registries.Allow = []string{"ghcr.io"}
		c.Policy.Dir = policyDir
	})
	next, err := certs.Generate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(h.bundle.CAPEM)
	roots.AppendCertsFromPEM(next.CAPEM)
	keepAlive := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}, ForceAttemptHTTP2: true}
	fresh := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}, DisableKeepAlives: true}
	t.Cleanup(keepAlive.CloseIdleConnections)

	// The load: each worker posts in a loop and records every answer.
	type answer struct {
		reason string // imagereview: status.reason
		err    error
	}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		answers  = map[int][]answer{} // by worker, in order
		total    atomic.Int64
	)
	review := imageReview("default", nil, pinned)
	facts := providerRequest("Not A Reference", "quay.io/team/app:v1") // both answered without network
	// Image reviews from two workers are evaluated concurrently, across the
	// swap of the prepared query (-race checks the engine's reload).
	worker := func(id int, rt http.RoundTripper, path string, body []byte) {
		defer wg.Done()
		c := &http.Client{Transport: rt, Timeout: 10 * time.Second}
		for !stop.Load() {
			a := answer{}
			resp, err := c.Post(h.base+path, "application/json", bytes.NewReader(body))
			if err == nil {
				var raw []byte
				raw, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
				case resp.StatusCode != http.StatusOK:
					err = fmt.Errorf("status %d: %s", resp.StatusCode, raw)
				case path == "/v1/imagereview":
					var r reviewResponse
					if err = json.Unmarshal(raw, &r); err == nil {
						a.reason = r.Status.Reason
					}
				default:
					var r response
					if err = json.Unmarshal(raw, &r); err == nil && (len(r.Response.Items) != 2 || r.Response.SystemError != "") {
						err = fmt.Errorf("facts answer %s, want two items and no systemError", raw)
					}
				}
			}
			total.Add(1)
			mu.Lock()
			if err != nil {
				failures = append(failures, fmt.Sprintf("worker %d %s: %v", id, path, err))
			}
			answers[id] = append(answers[id], answer{reason: a.reason, err: err})
			mu.Unlock()
		}
	}
	wg.Add(4)
	go worker(0, keepAlive, "/v1/imagereview", review)
	go worker(1, fresh, "/v1/imagereview", review)
	go worker(2, keepAlive, "/v1/externaldata/facts", facts)
	go worker(3, fresh, "/v1/externaldata/facts", facts)
	stopLoad := func() {
		if !stop.Swap(true) {
			wg.Wait()
		}
	}
	defer stopLoad()
	lastReason := func() string {
		mu.Lock()
		defer mu.Unlock()
		if a := answers[0]; len(a) > 0 {
			return a[len(a)-1].reason
		}
		return ""
	}
	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("first answers from policy A", func() bool { return lastReason() == "policy A" })

	// (a) A valid new policy (written in place, as an editor or a
	// ConfigMap update might).
	writeFile(t, policyFile, reviewPolicy(true, "policy B, the new one"))
	waitUntil("decisions from policy B", func() bool { return lastReason() == "policy B, the new one" })
	if status, body := h.get(t, "/readyz"); status != http.StatusOK || strings.Contains(body, "policy") {
		t.Errorf("/readyz after a good reload = %d %s, want 200 without a policy error", status, body)
	}

	// (b) A broken policy: it never replaces policy B.
	writeFile(t, policyFile, "package imagegate.review\n\ndecision := {\"allowed\": true,\n")
	var ready string
	waitUntil("/readyz reporting the failed reload", func() bool {
		status, body := h.get(t, "/readyz")
		ready = body
		return status == http.StatusOK && strings.Contains(body, "reload failed")
	})
	if !strings.Contains(ready, "previous policy serving") || !strings.Contains(ready, "review.rego:") {
		t.Errorf("/readyz = %s, want the failed reload with file:line, and that the previous policy serves", ready)
	}
	time.Sleep(300 * time.Millisecond) // answers after the failed reload
	if got := lastReason(); got != "policy B, the new one" {
		t.Errorf("after a broken policy was written: reason %q, want policy B still", got)
	}

	// (c) Certificate rotation: new files in place (not atomically: the key
	// may briefly not match the certificate, which must not matter).
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dst, string(b))
	}
	copyFile(next.CertFile, h.bundle.CertFile)
	copyFile(next.KeyFile, h.bundle.KeyFile)
	want := leaf(t, next.CertFile)
	waitUntil("new connections served the new certificate", func() bool {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(h.base, "https://"), &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatalf("handshake during rotation: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Equal(want)
	})
	time.Sleep(300 * time.Millisecond) // more answers over new connections
	stopLoad()

	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during reloads, want none; first: %s", len(failures), total.Load(), strings.Join(failures[:min(5, len(failures))], "\n"))
	}
	// Per worker, once policy B answered, policy A never did again.
	for id := range 2 {
		seenB := false
		for i, a := range answers[id] {
			switch a.reason {
			case "policy B, the new one":
				seenB = true
			case "policy A":
				if seenB {
					t.Errorf("worker %d answer %d: policy A after policy B", id, i)
				}
			default:
				if a.err == nil {
					t.Errorf("worker %d answer %d: reason %q, want policy A or B", id, i, a.reason)
				}
			}
		}
	}
	t.Logf("%d requests during a policy reload, a broken policy and a certificate rotation; image reviews %d kept-alive, %d on new connections; facts %d kept-alive, %d on new connections",
		total.Load(), len(answers[0]), len(answers[1]), len(answers[2]), len(answers[3]))
}

func leaf(t *testing.T, certFile string) *x509.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, strings.TrimSuffix(certFile, ".crt")+".key")
	if err != nil {
		t.Fatal(err)
	}
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return l
}
