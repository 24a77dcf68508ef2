package server_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/server/config"
)

// pinned is a digest-pinned reference the default policy allows without a
// single registry request (it only checks the reference and the allowlist).
const pinned = "ghcr.io/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestOverloadShedsWithReason: with limits.maxConcurrentRequests 2, two
// requests stuck on a slow registry hold both slots, two more wait (the
// queue holds as many as the limit) and are shed after half the budget, a
// fifth is shed at once; every refusal is a 503 whose systemError/reason
// starts with "overloaded:"; /healthz and /readyz are not queued; once the
// slots free up, requests are served again; the shed count is on /metrics.
func TestOverloadShedsWithReason(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/slow", "v1", registrytest.Image{Created: created})
	const budget = 2 * time.Second
	h := start(t, reg, func(c *config.Config) {
		c.Budget = config.Duration(budget)
		c.Limits.MaxConcurrentRequests = 2
	})
	release := make(chan struct{})
	reg.Delay(time.Nanosecond, func(r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/team/slow/") {
			<-release
		}
		return false
	})
	defer close(release)
	slow := providerRequest(reg.Host + "/team/slow:v1")

	type result struct {
		status  int
		body    string
		elapsed time.Duration
	}
	post := func(path string, body []byte) result {
		t0 := time.Now()
		resp, err := h.client.Post(h.base+path, "application/json", bytes.NewReader(body))
		if err != nil {
			return result{status: -1, body: err.Error(), elapsed: time.Since(t0)}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		// ImageReviews carry the hint in the Status body (a header would
		// make client-go retry up to 10 times per webhook attempt).
		if resp.StatusCode == http.StatusServiceUnavailable && path != "/v1/imagereview" && resp.Header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After: %s", b)
		}
		if resp.StatusCode == http.StatusServiceUnavailable && path == "/v1/imagereview" && resp.Header.Get("Retry-After") != "" {
			t.Errorf("503 ImageReview with a Retry-After header: %s", b)
		}
		return result{status: resp.StatusCode, body: string(b), elapsed: time.Since(t0)}
	}
	// Two holders, then two waiters, each started once the previous one is
	// counted (in progress, then waiting) so the roles are deterministic.
	results := make([]result, 4)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = post("/v1/externaldata/facts", slow) }()
		gauge, want := "imagegate_http_requests_in_progress", i+1
		if i >= 2 {
			gauge, want = "imagegate_http_requests_waiting", i-1
		}
		waitMetric(t, h, gauge, want)
	}
	// The queue is full: a fifth request (another endpoint, same limit) is
	// shed at once, and its reason says why.
	fifth := post("/v1/imagereview", imageReview("default", nil, pinned))
	if st := unavailable(t, fifth.body, 1); fifth.status != http.StatusServiceUnavailable || !strings.HasPrefix(st.Message, "imagegate overloaded: 2 requests in progress and 2 waiting") {
		t.Errorf("fifth request = %d %s, want 503 Status, message imagegate overloaded: …", fifth.status, fifth.body)
	}
	if fifth.elapsed > budget/2 {
		t.Errorf("fifth request took %v, want it shed at once (queue full), not after waiting", fifth.elapsed)
	}
	// Probes are never queued behind /v1/*.
	for _, path := range []string{"/healthz", "/readyz"} {
		t0 := time.Now()
		if status, body := h.get(t, path); status != http.StatusOK {
			t.Errorf("GET %s under overload = %d %s, want 200", path, status, body)
		}
		if d := time.Since(t0); d > budget/2 {
			t.Errorf("GET %s under overload took %v, want an answer without queueing", path, d)
		}
	}
	wg.Wait()
	for i, r := range results[:2] {
		// The holders answer at the budget with the key left out (transient).
		if r.status != http.StatusOK || !strings.Contains(r.body, "unavailable: 1 of 1 keys") {
			t.Errorf("holder %d = %d %s, want 200 with a transient systemError", i, r.status, r.body)
		}
	}
	for i, r := range results[2:] {
		var pr response
		_ = json.Unmarshal([]byte(r.body), &pr)
		if r.status != http.StatusServiceUnavailable || !strings.HasPrefix(pr.Response.SystemError, "overloaded: no request slot free within 1s") ||
			pr.Kind != "ProviderResponse" || len(pr.Response.Items) != 0 {
			t.Errorf("waiter %d = %d %s, want 503 ProviderResponse with systemError overloaded: no request slot free within 1s", i, r.status, r.body)
		}
		// Waited half the budget, not forever: the answer still comes
		// before the budget (plus scheduling slack).
		if r.elapsed < budget/2 || r.elapsed > budget+time.Second {
			t.Errorf("waiter %d answered after %v, want between budget/2 (%v) and budget+1s", i, r.elapsed, budget/2)
		}
	}
	// Slots are free again: served normally.
	if status, r := h.post(t, "/v1/externaldata/digest", providerRequest("Not A Reference")); status != http.StatusOK || len(r.Response.Items) != 1 {
		t.Errorf("after the overload: digest = %d %+v, want 200 with one item", status, r)
	}
	_, metrics := h.get(t, "/metrics")
	for _, want := range []string{
		`imagegate_http_requests_shed_total{handler="facts"} 2`,
		`imagegate_http_requests_shed_total{handler="imagereview"} 1`,
		`imagegate_http_requests_total{code="503",handler="facts"} 2`,
		"imagegate_http_requests_in_progress 0",
		"imagegate_http_requests_waiting 0",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// waitMetric polls /metrics until the unlabelled gauge reads want.
func waitMetric(t *testing.T, h *harness, name string, want int) {
	t.Helper()
	line := fmt.Sprintf("%s %d\n", name, want)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := h.get(t, "/metrics")
		if strings.Contains(body, line) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %d", name, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlowClientsAreCutOff (slowloris): connections that dribble their
// headers, dribble their body, stall mid-handshake or never start one, or
// (HTTP/2) leave a header block unfinished, are closed by the server after
// server.readHeaderTimeout / server.readTimeout, while a normal client is
// served throughout.
func TestSlowClientsAreCutOff(t *testing.T) {
	const (
		headerTimeout = 300 * time.Millisecond
		readTimeout   = 800 * time.Millisecond
		// Cut off well before a dribbler would have finished on its own.
		dribbleFor = 20 * time.Second
		slack      = 2 * time.Second
	)
	h := start(t, nil, func(c *config.Config) {
		c.Registries.Allow = []string{"ghcr.io"}
		c.Server.ReadHeaderTimeout = config.Duration(headerTimeout)
		c.Server.ReadTimeout = config.Duration(readTimeout)
	})
	addr := strings.TrimPrefix(h.base, "https://")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.bundle.CAPEM)
	dialTLS := func(proto string) (net.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, NextProtos: []string{proto}})
	}
	type attack struct {
		desc  string
		proto string        // ALPN; "" is http/1.1
		limit time.Duration // the server must have closed the connection by then
		run   func(conn net.Conn, stop <-chan struct{})
	}
	dribble := func(conn net.Conn, stop <-chan struct{}, chunks func(i int) string) {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := io.WriteString(conn, chunks(i)); err != nil {
				return
			}
		}
	}
	attacks := []attack{
		{desc: "headers one line at a time", limit: headerTimeout + slack, run: func(conn net.Conn, stop <-chan struct{}) {
			io.WriteString(conn, "POST /v1/externaldata/facts HTTP/1.1\r\nHost: imagegate\r\n")
			dribble(conn, stop, func(i int) string { return fmt.Sprintf("X-Slow-%d: x\r\n", i) })
		}},
		{desc: "headers one byte at a time", limit: headerTimeout + slack, run: func(conn net.Conn, stop <-chan struct{}) {
			line := "GET /healthz HTTP/1.1\r\nHost: imagegate\r\nX-Pad: " + strings.Repeat("a", 1000)
			dribble(conn, stop, func(i int) string { return string(line[i%len(line)]) })
		}},
		{desc: "body one byte at a time", limit: readTimeout + slack, run: func(conn net.Conn, stop <-chan struct{}) {
			fmt.Fprintf(conn, "POST /v1/imagereview HTTP/1.1\r\nHost: imagegate\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
			dribble(conn, stop, func(int) string { return " " })
		}},
		// HTTP/2 has no header timeout of its own: the server pings a
		// connection silent for readHeaderTimeout and closes it when the
		// ping goes unanswered for as long again.
		{desc: "HTTP/2 header block never finished", proto: "h2", limit: 2*headerTimeout + slack, run: func(conn net.Conn, stop <-chan struct{}) {
			io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"+
				"\x00\x00\x00\x04\x00\x00\x00\x00\x00"+ // SETTINGS, empty
				"\x00\x00\x10\x01\x00\x00\x00\x00\x01") // HEADERS on stream 1: 16 bytes promised, END_HEADERS unset, none sent
			<-stop
		}},
	}
	type outcome struct {
		desc    string
		elapsed time.Duration
		reply   string
		err     error
	}
	outcomes := make(chan outcome, 32)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer close(stop)
	for _, a := range attacks {
		for range 3 {
			proto := a.proto
			if proto == "" {
				proto = "http/1.1"
			}
			conn, err := dialTLS(proto)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				go a.run(conn, stop)
				// Read until the server closes; whatever it says before
				// closing (a 400 for the body) is kept.
				conn.SetReadDeadline(time.Now().Add(dribbleFor))
				reply, err := io.ReadAll(conn)
				outcomes <- outcome{desc: a.desc, elapsed: time.Since(t0), reply: string(reply), err: err}
			}()
		}
	}
	// Below TLS: a TCP connection that never says anything, and one that
	// sends half a ClientHello and stalls. The handshake timeout is the
	// shortest of the server's timeouts.
	for _, partial := range [][]byte{nil, {0x16, 0x03, 0x01, 0x02, 0x00, 0x01}} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write(partial)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			conn.SetReadDeadline(time.Now().Add(dribbleFor))
			reply, err := io.ReadAll(conn)
			outcomes <- outcome{desc: fmt.Sprintf("TCP connection sending %d bytes of a ClientHello", len(partial)), elapsed: time.Since(t0), reply: string(reply), err: err}
		}()
	}
	// Meanwhile a normal client is served, each answer well within the budget.
	served := 0
	for end := time.Now().Add(readTimeout + 200*time.Millisecond); time.Now().Before(end); served++ {
		t0 := time.Now()
		status, r, raw := h.review(t, imageReview("default", nil, pinned))
		if status != http.StatusOK || !r.Status.Allowed {
			t.Fatalf("normal client during the attack: %d %s, want 200 allowed", status, raw)
		}
		if d := time.Since(t0); d > 2500*time.Millisecond {
			t.Errorf("normal client answered after %v during the attack, want within the budget", d)
		}
	}
	wg.Wait()
	close(outcomes)
	n := 0
	for o := range outcomes {
		n++
		var ne net.Error
		if errors.As(o.err, &ne) && ne.Timeout() {
			t.Errorf("%s: still open after %v, want the server to close it", o.desc, dribbleFor)
			continue
		}
		limit := headerTimeout + slack
		for _, a := range attacks {
			if a.desc == o.desc {
				limit = a.limit
			}
		}
		if o.elapsed > limit {
			t.Errorf("%s: closed after %v, want within %v", o.desc, o.elapsed, limit)
		}
		if strings.HasPrefix(o.desc, "body") && !strings.Contains(o.reply, "400 Bad Request") {
			t.Errorf("%s: reply %q, want a 400 before the close", o.desc, o.reply)
		}
	}
	if n != 3*len(attacks)+2 {
		t.Errorf("%d connections reported, want %d", n, 3*len(attacks)+2)
	}
	t.Logf("normal client served %d image reviews while %d slow connections were cut off", served, n)
	if status, _ := h.get(t, "/healthz"); status != http.StatusOK {
		t.Errorf("/healthz after the attack = %d", status)
	}
}

// TestOversizedBodies: /v1/imagereview refuses a body over
// limits.maxBodyBytes with a 400 that says so (the external-data endpoints
// are covered by TestBadRequests), also when the body is chunked (no
// Content-Length) or far larger than the limit; the server stops reading,
// nothing is fetched, and it keeps serving.
func TestOversizedBodies(t *testing.T) {
	reg := registrytest.New(t)
	h := start(t, reg, func(c *config.Config) { c.Limits.MaxBodyBytes = 4096 })
	reg.ResetCounts()
	big := imageReview("default", nil, reg.Host+"/team/app:v1@sha256:"+strings.Repeat("0", 64), strings.Repeat("x", 5000))
	for _, tc := range []struct {
		desc string
		path string
		body func() io.Reader
		want string
	}{
		{desc: "imagereview with Content-Length", path: "/v1/imagereview", body: func() io.Reader { return bytes.NewReader(big) }, want: "request body too large"},
		{desc: "imagereview chunked", path: "/v1/imagereview", body: func() io.Reader { return io.MultiReader(bytes.NewReader(big)) }, want: "request body too large"},
		{desc: "imagereview 64 MiB", path: "/v1/imagereview", body: func() io.Reader { return io.LimitReader(zeros{}, 64<<20) }, want: "request body too large"},
		{desc: "facts 64 MiB", path: "/v1/externaldata/facts", body: func() io.Reader { return io.LimitReader(zeros{}, 64<<20) }, want: "larger than 4096 bytes"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t0 := time.Now()
			resp, err := h.client.Post(h.base+tc.path, "application/json", tc.body())
			if err != nil {
				// The server may close while a huge body is still being
				// sent; what matters is that it did not read it all.
				t.Logf("POST %s: %v", tc.path, err)
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tc.want) || !strings.Contains(string(b), "bad_request") {
					t.Errorf("POST %s = %d %s, want 400 bad_request mentioning %q", tc.path, resp.StatusCode, b, tc.want)
				}
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Errorf("refusing took %v: the server read far past the limit", d)
			}
		})
	}
	if got := reg.Total(); got != 0 {
		t.Errorf("registry saw %d requests for oversized bodies, want 0", got)
	}
	if status, r, raw := h.review(t, imageReview("default", nil, pinned)); status != http.StatusOK || r.Kind != "ImageReview" {
		t.Errorf("after oversized bodies: %d %s", status, raw)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestHostileTLSClients: with tls.clientCAFile set, every kind of bad client
// is refused: no certificate (403 naming the requirement), a certificate
// from another CA, an expired one, one without clientAuth usage (handshake
// failures), TLS 1.2 against minVersion 1.3, plain HTTP to the TLS port;
// meanwhile and afterwards /healthz answers and the good client is served.
func TestHostileTLSClients(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	other := newTestCA(t, dir, "other")
	now := time.Now()
	serving := ca.issue(t, dir, "serving", x509.Certificate{
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	clientUsage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	good := ca.issue(t, dir, "good", x509.Certificate{ExtKeyUsage: clientUsage})
	expired := ca.issue(t, dir, "expired", x509.Certificate{ExtKeyUsage: clientUsage, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	notYet := ca.issue(t, dir, "not-yet", x509.Certificate{ExtKeyUsage: clientUsage, NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)})
	serverOnly := ca.issue(t, dir, "server-only", x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	stranger := other.issue(t, dir, "stranger", x509.Certificate{ExtKeyUsage: clientUsage})

	h := start(t, nil, func(c *config.Config) {
		c.Registries.Allow = []string{"ghcr.io"}
		c.TLS.CertFile, c.TLS.KeyFile, c.TLS.ClientCAFile = serving.certFile, serving.keyFile, ca.file
	})
	addr := strings.TrimPrefix(h.base, "https://")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	client := func(maxVersion uint16, certs ...tls.Certificate) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MaxVersion: maxVersion}, ForceAttemptHTTP2: true}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	review := imageReview("default", nil, pinned)
	do := func(c *http.Client, path string) (int, string, error) {
		method, body := http.MethodGet, io.Reader(nil)
		if strings.HasPrefix(path, "/v1/") {
			method, body = http.MethodPost, bytes.NewReader(review)
		}
		req, _ := http.NewRequest(method, h.base+path, body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	healthy := func(when string) {
		t.Helper()
		if status, _, err := do(client(0), "/healthz"); err != nil || status != http.StatusOK {
			t.Errorf("/healthz %s = %d, %v; want 200", when, status, err)
		}
		if status, body, err := do(client(0, good.tls), "/v1/imagereview"); err != nil || status != http.StatusOK || !strings.Contains(body, `"allowed":true`) {
			t.Errorf("good client %s = %d %s %v; want 200 allowed", when, status, body, err)
		}
	}
	healthy("before")

	t.Run("no client certificate", func(t *testing.T) {
		for _, path := range []string{"/v1/imagereview", "/v1/externaldata/facts", "/metrics"} {
			status, body, err := do(client(0), path)
			if err != nil || status != http.StatusForbidden || !strings.Contains(body, "a client certificate signed by imagegate's tls.clientCAFile is required") {
				t.Errorf("%s without a certificate = %d %s %v; want 403 naming tls.clientCAFile", path, status, body, err)
			}
		}
	})
	for _, tc := range []struct {
		desc string
		cert tls.Certificate
		want string // in the client's handshake error: the server's alert
	}{
		{desc: "certificate from another CA", cert: stranger.tls, want: "unknown certificate authority"},
		{desc: "expired certificate", cert: expired.tls, want: "expired certificate"},
		{desc: "certificate not valid yet", cert: notYet.tls, want: "expired certificate"},
		{desc: "certificate without clientAuth usage", cert: serverOnly.tls, want: "bad certificate"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			// The certificate is sent whatever the server's acceptable CAs
			// (crypto/tls would otherwise send none: a plain 403). It fails
			// the handshake, even on the open probe path; the TLS 1.3
			// client learns it from the server's alert on its first read.
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"},
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc.cert, nil }})
			if err == nil {
				defer conn.Close()
				io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: imagegate\r\n\r\n")
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				var reply []byte
				reply, err = io.ReadAll(conn)
				if err == nil {
					t.Fatalf("GET /healthz with %s answered %q, want the handshake refused", tc.desc, reply)
				}
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("with %s: error %v, want the alert %q", tc.desc, err, tc.want)
			}
		})
	}
	t.Run("TLS 1.2 client", func(t *testing.T) {
		_, _, err := do(client(tls.VersionTLS12, good.tls), "/v1/imagereview")
		if err == nil || !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("TLS 1.2 client: error %v, want a protocol version alert", err)
		}
	})
	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Post("http://"+addr+"/v1/imagereview", "application/json", bytes.NewReader(review))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTP request to an HTTPS server") {
			t.Errorf("plain HTTP = %d %q, want 400 saying it is an HTTPS server", resp.StatusCode, b)
		}
	})
	t.Run("garbage instead of a ClientHello", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write(bytes.Repeat([]byte{0xff}, 512))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(bufio.NewReader(conn)); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Error("connection still open after garbage, want it closed")
			}
		}
	})
	healthy("after")
}

// testCA is a throwaway CA able to issue odd certificates (expired, wrong
// usage) that certs.Generate will not.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	file string
}

type issued struct {
	certFile, keyFile string
	tls               tls.Certificate
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), file: filepath.Join(dir, name+".crt")}
	writeFile(t, ca.file, string(ca.pem))
	return ca
}

// issue signs tmpl (serial, subject and validity filled in when unset).
func (ca *testCA) issue(t *testing.T, dir, name string, tmpl x509.Certificate) issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.Subject = pkix.Name{CommonName: name}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if tmpl.NotAfter.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	out := issued{certFile: filepath.Join(dir, name+".crt"), keyFile: filepath.Join(dir, name+".key")}
	writeFile(t, out.certFile, string(certPEM))
	writeFile(t, out.keyFile, string(keyPEM))
	if out.tls, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return out
}
