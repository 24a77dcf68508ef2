package registrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FaultProxy is an HTTP reverse proxy in front of a Registry that injects the
// faults a real registry cannot be made to produce on demand: being down,
// slowness, throttling and server errors, truncated and oversized bodies,
// content that does not match its digest, endless referrer listings,
// redirect loops, redirects and token realms pointing at addresses imagegate
// must never contact. Faults are switched at run time per request matcher;
// requests no fault matches are forwarded unchanged.
//
// Image references name the proxy (FaultProxy.Host); pushes go straight to
// the registry (Registry.Push and friends), which holds the same content.
type FaultProxy struct {
	// Host is the proxy's host:port, the registry part of image references.
	Host string

	target   string // the registry's host:port
	upstream *http.Transport

	mu      sync.Mutex
	srv     *http.Server
	rules   []*rule
	counts  map[string]int
	faulted int

	conns atomic.Int64 // connections accepted
	sent  atomic.Int64 // body bytes written by streaming faults
}

// Fault is what the proxy does to a matching request. Exactly one action
// applies, chosen in field order (Delay combines with any other action, or
// with forwarding when it is the only field set).
type Fault struct {
	// Delay holds the request this long (or until the client gives up)
	// before acting on it.
	Delay time.Duration
	// Reset closes the connection without answering (the client sees a
	// reset or EOF).
	Reset bool
	// Status answers with this code, Header and Body instead of forwarding.
	Status int
	Header http.Header
	Body   string
	// Redirect answers 307 with this Location. RedirectLoop answers 307 to
	// the same path, endlessly.
	Redirect     string
	RedirectLoop bool
	// Truncate forwards the request but sends only half of the body the
	// Content-Length header promises, then closes the connection.
	Truncate bool
	// ServeFrom forwards the request to this path instead (another
	// digest's manifest or blob) and still claims the requested digest in
	// Docker-Content-Digest: content that does not match its digest.
	ServeFrom string
	// Stream answers 200 with ContentType and a body of Stream bytes:
	// StreamPrefix, then StreamUnit repeated (default "a"), generated as it
	// is written, never held in memory. DeclareLength announces the length
	// in Content-Length; otherwise the body is chunked.
	Stream        int64
	StreamPrefix  string
	StreamUnit    string
	ContentType   string
	DeclareLength bool
	// FloodReferrers forwards a referrers request and adds this many
	// entries (image manifests that do not exist, artifactType SBOM) in
	// front of the real ones.
	FloodReferrers int
	// Times applies the fault to the first Times matching requests only
	// (0: every one).
	Times int
}

type rule struct {
	match func(*http.Request) bool
	f     Fault
	left  int // when f.Times > 0
}

// NewFaultProxy starts a proxy on 127.0.0.1 in front of reg and stops it
// with the test.
func NewFaultProxy(t testing.TB, reg *Registry) *FaultProxy {
	t.Helper()
	p := &FaultProxy{
		target: reg.Host,
		// Plain HTTP to loopback, never through a proxy from the environment.
		upstream: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16},
		counts:   map[string]int{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Host = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.mu.Lock()
		srv := p.srv
		p.srv = nil
		p.mu.Unlock()
		if srv != nil {
			srv.Close()
		}
		p.upstream.CloseIdleConnections()
	})
	return p
}

func (p *FaultProxy) serve(ln net.Listener) {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nopLogger()}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(&countingListener{Listener: ln, n: &p.conns}) }()
}

// Down closes the listener and every open connection: the proxy's address
// refuses connections until Up.
func (p *FaultProxy) Down() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Up listens again on the same address after Down; it does nothing while
// the proxy is up.
func (p *FaultProxy) Up(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	up := p.srv != nil
	p.mu.Unlock()
	if up {
		return
	}
	var (
		ln  net.Listener
		err error
	)
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.Host); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("faultproxy: listening again on %s: %v", p.Host, err)
}

// Inject applies f to requests match accepts (nil: all), after the faults
// injected before it.
func (p *FaultProxy) Inject(match func(*http.Request) bool, f Fault) {
	if match == nil {
		match = func(*http.Request) bool { return true }
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &rule{match: match, f: f, left: f.Times})
}

// Clear removes every fault: the proxy forwards everything again.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Count returns how many requests of kind (see Kind) the proxy received.
func (p *FaultProxy) Count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[kind]
}

// Faulted returns how many requests a fault was applied to.
func (p *FaultProxy) Faulted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faulted
}

// Conns returns how many connections the proxy accepted.
func (p *FaultProxy) Conns() int64 { return p.conns.Load() }

// StreamedBytes returns how many body bytes streaming faults (Stream) have
// written so far: what the client read, plus what socket buffers held when
// it hung up.
func (p *FaultProxy) StreamedBytes() int64 { return p.sent.Load() }

// Path matches requests whose URL path contains every one of parts.
func Path(parts ...string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		for _, s := range parts {
			if !strings.Contains(r.URL.Path, s) {
				return false
			}
		}
		return true
	}
}

// KindPath matches requests of kind (see Kind) whose path contains part.
func KindPath(kind, part string) func(*http.Request) bool {
	return func(r *http.Request) bool { return Kind(r) == kind && strings.Contains(r.URL.Path, part) }
}

func (p *FaultProxy) pick(req *http.Request) (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[Kind(req)]++
	for _, r := range p.rules {
		if r.f.Times > 0 && r.left == 0 {
			continue
		}
		if !r.match(req) {
			continue
		}
		if r.f.Times > 0 {
			r.left--
		}
		p.faulted++
		return r.f, true
	}
	return Fault{}, false
}

func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	f, ok := p.pick(req)
	if !ok {
		p.forward(w, req, req.URL.Path)
		return
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-req.Context().Done():
			return
		}
	}
	switch {
	case f.Reset:
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic(http.ErrAbortHandler)
		}
		c, _, err := hj.Hijack()
		if err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN
		}
		c.Close()
	case f.Status != 0:
		for k, vs := range f.Header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(f.Status)
		io.WriteString(w, f.Body)
	case f.Redirect != "":
		http.Redirect(w, req, f.Redirect, http.StatusTemporaryRedirect)
	case f.RedirectLoop:
		// Alternate the query so that no hop repeats its predecessor's URL.
		n, _ := strconv.Atoi(req.URL.Query().Get("loop"))
		http.Redirect(w, req, fmt.Sprintf("%s?loop=%d", req.URL.Path, n+1), http.StatusTemporaryRedirect)
	case f.Truncate:
		p.truncate(w, req)
	case f.ServeFrom != "":
		want := digestIn(req.URL.Path)
		p.forwardAs(w, req, f.ServeFrom, want)
	case f.Stream > 0:
		p.stream(w, f)
	case f.FloodReferrers > 0:
		p.flood(w, req, f.FloodReferrers)
	default:
		p.forward(w, req, req.URL.Path)
	}
}

func digestIn(path string) string {
	if i := strings.LastIndex(path, "/"); i >= 0 && strings.HasPrefix(path[i+1:], "sha256:") {
		return path[i+1:]
	}
	return ""
}

// roundTrip sends req to the registry with its path replaced.
func (p *FaultProxy) roundTrip(req *http.Request, path string) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.URL.Host = p.target
	out.URL.Path = path
	out.URL.RawPath = ""
	out.Host = p.target
	return p.upstream.RoundTrip(out)
}

func (p *FaultProxy) forward(w http.ResponseWriter, req *http.Request, path string) {
	p.forwardAs(w, req, path, "")
}

// forwardAs forwards to path; a non-empty digest replaces the registry's
// Docker-Content-Digest header.
func (p *FaultProxy) forwardAs(w http.ResponseWriter, req *http.Request, path, digest string) {
	resp, err := p.roundTrip(req, path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	copyHeader(w.Header(), resp.Header)
	if digest != "" && w.Header().Get("Docker-Content-Digest") != "" {
		w.Header().Set("Docker-Content-Digest", digest)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		if k == "Connection" || k == "Keep-Alive" || k == "Transfer-Encoding" {
			continue
		}
		dst[k] = append([]string(nil), vs...)
	}
}

// truncate promises the whole body in Content-Length, sends half of it and
// closes the connection.
func (p *FaultProxy) truncate(w http.ResponseWriter, req *http.Request) {
	resp, err := p.roundTrip(req, req.URL.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	copyHeader(w.Header(), resp.Header)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body[:len(body)/2])
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	// Abort: net/http closes the connection without completing the body.
	panic(http.ErrAbortHandler)
}

// stream writes f.Stream bytes generated on the fly, stopping at the first
// failed write (the client hung up).
func (p *FaultProxy) stream(w http.ResponseWriter, f Fault) {
	ct := f.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	if f.DeclareLength {
		w.Header().Set("Content-Length", strconv.FormatInt(f.Stream, 10))
	}
	w.WriteHeader(http.StatusOK)
	unit := f.StreamUnit
	if unit == "" {
		unit = "a"
	}
	var buf bytes.Buffer
	for buf.Len() < 32<<10 {
		buf.WriteString(unit)
	}
	chunk := buf.Bytes()
	left := f.Stream
	write := func(b []byte) bool {
		if int64(len(b)) > left {
			b = b[:left]
		}
		n, err := w.Write(b)
		p.sent.Add(int64(n))
		left -= int64(n)
		return err == nil && left > 0
	}
	if !write([]byte(f.StreamPrefix)) {
		return
	}
	for write(chunk) {
	}
}

// flood answers a referrers request with n made-up entries before the real
// ones.
func (p *FaultProxy) flood(w http.ResponseWriter, req *http.Request, n int) {
	resp, err := p.roundTrip(req, req.URL.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var idx v1.IndexManifest
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
	}
	fake := make([]v1.Descriptor, 0, n+len(idx.Manifests))
	for i := range n {
		h, _, _ := v1.SHA256(strings.NewReader("flood " + strconv.Itoa(i)))
		fake = append(fake, v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 512, Digest: h, ArtifactType: "application/spdx+json"})
	}
	idx.SchemaVersion = 2
	idx.MediaType = types.OCIImageIndex
	idx.Manifests = append(fake, idx.Manifests...)
	b, err := json.Marshal(idx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", string(types.OCIImageIndex))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

// Sink is a listener that counts the connections it accepts and answers
// every request with 200 and an empty JSON object: the address behind a
// forbidden redirect or token realm, where any connection is a failure.
type Sink struct {
	// Host is the sink's host:port.
	Host    string
	accepts atomic.Int64
}

// NewSink starts a sink on 127.0.0.1 and stops it with the test.
func NewSink(t testing.TB) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{Host: ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"token":"sink","access_token":"sink"}`)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nopLogger(),
	}
	go func() { _ = srv.Serve(&countingListener{Listener: ln, n: &s.accepts}) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

// Accepts returns how many connections reached the sink.
func (s *Sink) Accepts() int64 { return s.accepts.Load() }

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}
