package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// generate calls Generate in a fresh temporary directory.
func generate(t *testing.T) *Bundle {
	t.Helper()
	b, err := Generate(filepath.Join(t.TempDir(), "certs"), nil)
	if err != nil {
		t.Fatalf("Generate() error = %v", err)
	}
	return b
}

// servedCopy copies b's server cert and key (and, if withCA, its CA) into a
// fresh directory, so tests can rotate them without touching b.
func servedCopy(t *testing.T, b *Bundle, withCA bool) Options {
	t.Helper()
	dir := t.TempDir()
	o := Options{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	copyFile(t, b.CertFile, o.CertFile)
	copyFile(t, b.KeyFile, o.KeyFile)
	if withCA {
		o.ClientCAFile = filepath.Join(dir, "ca.crt")
		copyFile(t, b.CAFile, o.ClientCAFile)
	}
	return o
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, data)
}

// writeFile overwrites dst in place (as a careless rotation would) and moves
// its mtime forward, so the change is visible even on file systems with
// coarse timestamps.
func writeFile(t *testing.T, dst string, data []byte) {
	t.Helper()
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
	bumpMtime(t, dst)
}

var mtimeSeq struct {
	sync.Mutex
	n int
}

func bumpMtime(t *testing.T, path string) {
	t.Helper()
	mtimeSeq.Lock()
	mtimeSeq.n++
	ts := time.Now().Add(time.Duration(mtimeSeq.n) * time.Minute)
	mtimeSeq.Unlock()
	if err := os.Chtimes(path, ts, ts); err != nil {
		t.Fatal(err)
	}
}

func pool(t *testing.T, pems ...[]byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, b := range pems {
		if !p.AppendCertsFromPEM(b) {
			t.Fatalf("no certificates in %q", b)
		}
	}
	return p
}

func leafSerial(t *testing.T, certFile string) *big.Int {
	t.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", certFile)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// startServer serves "ok" over HTTPS on 127.0.0.1 with r's TLS config.
func startServer(t *testing.T, r *Reloader) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.TLS = r.TLSConfig()
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func addr(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// handshake dials srv with cfg and returns the negotiated state.
func handshake(srv *httptest.Server, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	c, err := d.Dial("tcp", addr(srv))
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

// servedSerial returns the serial of the leaf srv presents to a client that
// trusts roots.
func servedSerial(t *testing.T, srv *httptest.Server, roots *x509.CertPool) *big.Int {
	t.Helper()
	cs, err := handshake(srv, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake error = %v, want success", err)
	}
	return cs.PeerCertificates[0].SerialNumber
}

// get performs a real HTTP request with a fresh transport.
func get(srv *httptest.Server, cfg *tls.Config) error {
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get(srv.URL)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		return &unexpectedResponse{resp.StatusCode, string(body)}
	}
	return nil
}

type unexpectedResponse struct {
	code int
	body string
}

func (e *unexpectedResponse) Error() string {
	return "unexpected response " + http.StatusText(e.code) + ": " + e.body
}

// reloadRecorder collects OnReload calls.
type reloadRecorder struct {
	mu   sync.Mutex
	errs []error
}

func (r *reloadRecorder) record(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *reloadRecorder) calls() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

const testInterval = 10 * time.Millisecond

// waitForCheck sleeps until the next handshake is due to re-check files.
func waitForCheck() { time.Sleep(3 * testInterval) }
