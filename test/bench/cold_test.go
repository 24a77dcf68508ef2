//go:build bench

// TestCold measures the cold path of issue #7: the first lookup of a signed
// multi-platform image, with a fixed round-trip time added to every registry
// request by a delaying reverse proxy — on first contact with the registry
// (a fresh service), and for another repository of a registry the service
// has contacted before. It is a measurement, not a timed
// assertion: it fails only if the lookup fails or the image is not signed.
//
//	go test -tags bench -count=1 -v -run TestCold ./test/bench/
//
// BENCH_OUT (default .dev/bench) receives cold.md; BENCH_RTT (default 20ms)
// is the delay the proxy adds before forwarding each request.
package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagegate/imagegate/providers/lookup"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/server"
	"github.com/imagegate/imagegate/server/config"
	"github.com/imagegate/imagegate/test/bench/benchfix"
)

// span is one request as the proxy saw it: from arrival (before the delay)
// to the end of the forwarded response.
type span struct {
	kind       string // registrytest.Kind, manifests split by tag, digest or legacy cosign tag
	path       string
	start, end time.Time
}

// delayProxy forwards to a registry after sleeping rtt, and records spans.
type delayProxy struct {
	host  string
	rtt   time.Duration
	mu    sync.Mutex
	spans []span
}

func newDelayProxy(t *testing.T, target string, rtt time.Duration) *delayProxy {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &delayProxy{rtt: rtt}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.host = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		time.Sleep(p.rtt)
		rp.ServeHTTP(w, r)
		end := time.Now()
		p.mu.Lock()
		p.spans = append(p.spans, span{kind: kindOf(r), path: r.URL.Path, start: start, end: end})
		p.mu.Unlock()
	})}
	go srv.Serve(ln) //nolint:errcheck // closed with the test
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *delayProxy) take() []span {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.spans
	p.spans = nil
	return s
}

func kindOf(r *http.Request) string {
	k := registrytest.Kind(r)
	if strings.HasSuffix(k, " manifests") {
		switch tag := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]; {
		case strings.HasPrefix(tag, "sha256:"):
			k += " (digest)"
		case strings.HasPrefix(tag, "sha256-"):
			k += " (legacy ." + tag[strings.LastIndexByte(tag, '.')+1:] + " tag)"
		default:
			k += " (tag)"
		}
	}
	return k
}

// chain is the longest sequence of spans, each starting after the previous
// one ended: the sequential round trips on the critical path.
func chain(spans []span) []span {
	s := slices.Clone(spans)
	slices.SortFunc(s, func(a, b span) int { return a.start.Compare(b.start) })
	n := len(s)
	if n == 0 {
		return nil
	}
	best, prev := make([]int, n), make([]int, n)
	top := 0
	for j := range n {
		best[j], prev[j] = 1, -1
		for i := range j {
			if !s[i].end.After(s[j].start) && best[i]+1 > best[j] {
				best[j], prev[j] = best[i]+1, i
			}
		}
		if best[j] > best[top] {
			top = j
		}
	}
	var out []span
	for j := top; j >= 0; j = prev[j] {
		out = append(out, s[j])
	}
	slices.Reverse(out)
	return out
}

func countKinds(spans []span) map[string]int {
	m := map[string]int{}
	for _, s := range spans {
		m[s.kind]++
	}
	return m
}

func kindsTable(w *strings.Builder, cols []string, counts ...map[string]int) {
	keys := map[string]bool{}
	for _, c := range counts {
		for k := range c {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	fmt.Fprintf(w, "| request kind | %s |\n|---|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	totals := make([]int, len(counts))
	for _, k := range sorted {
		fmt.Fprintf(w, "| %s |", k)
		for i, c := range counts {
			fmt.Fprintf(w, " %d |", c[k])
			totals[i] += c[k]
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "| **total** |")
	for _, n := range totals {
		fmt.Fprintf(w, " **%d** |", n)
	}
	fmt.Fprintln(w)
}

// signedIndex pushes a 2-platform OCI index as repo:tag and attaches a
// keyless bundle (referrer) to the index and to each child.
func signedIndex(t *testing.T, reg *registrytest.Registry, ss *signaturetest.Sigstore, repo, tag string) v1.Hash {
	t.Helper()
	now := time.Now()
	labels := map[string]string{"org.opencontainers.image.source": "https://github.com/team/app"}
	idx, children := reg.PushIndex(t, repo, tag,
		registrytest.Image{Created: now, Labels: labels, Arch: "amd64"},
		registrytest.Image{Created: now, Labels: labels, Arch: "arm64"})
	for _, d := range append([]v1.Hash{idx}, children...) {
		ref, err := name.NewDigest(reg.Host+"/"+repo+"@"+d.String(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref)
		if err != nil {
			t.Fatal(err)
		}
		bundle := ss.SignImage(t, benchfix.Identity, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{})
		signaturetest.AttachReferrer(t, reg.Host, repo, v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}, bundle, signature.CosignSignPredicate)
	}
	return idx
}

func TestCold(t *testing.T) {
	rtt := 20 * time.Millisecond
	if v := os.Getenv("BENCH_RTT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("BENCH_RTT: %v", err)
		}
		rtt = d
	}
	loadStart := readFile("/proc/loadavg")
	reg := registrytest.New(t)
	ss := signaturetest.NewSigstore(t)
	trustedRoot := ss.WriteTrustedRoot(t, t.TempDir())
	idx1 := signedIndex(t, reg, ss, "team/multi", "v1")
	idx2 := signedIndex(t, reg, ss, "team/multi2", "v1")
	idx3 := signedIndex(t, reg, ss, "team/multi3", "v1")
	proxy := newDelayProxy(t, reg.Host, rtt)

	newService := func() *lookup.Service {
		cfg := config.Default()
		cfg.Registries.Allow = []string{proxy.host}
		cfg.Registries.Insecure = []string{proxy.host}
		cfg.Registries.Private = []string{proxy.host}
		cfg.Trust.TrustedRoots = map[string]string{"test": trustedRoot}
		cfg.Policy.Params = benchfix.Params()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		lk, err := server.NewLookup(cfg, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		return lk
	}
	// 1. One cold lookup of a tag key on a fresh service.
	proxy.take()
	key1 := proxy.host + "/team/multi:v1"
	lk := newService()
	t0 := time.Now()
	f, err := lk.Facts(context.Background(), key1)
	wall := time.Since(t0)
	if err != nil {
		t.Fatalf("%s: %v", key1, err)
	}
	if f.Digest != idx1.String() || !f.Signed() {
		t.Fatalf("%s: digest %s (want %s), signed %v: %v", key1, f.Digest, idx1, f.Signed(), f.VerificationErrors)
	}
	spans1 := proxy.take()
	ch := chain(spans1)
	counts1 := countKinds(spans1)

	// The same key again: warm, so no request.
	t1 := time.Now()
	if _, err := lk.Facts(context.Background(), key1); err != nil {
		t.Fatal(err)
	}
	warm := time.Since(t1)
	warmReqs := len(proxy.take())

	// 1b. Another image (another repository) on the same service: a cold
	// lookup from a registry this process has contacted before.
	key3 := proxy.host + "/team/multi3:v1"
	t3 := time.Now()
	f3, err := lk.Facts(context.Background(), key3)
	wallKnown := time.Since(t3)
	if err != nil {
		t.Fatalf("%s: %v", key3, err)
	}
	if f3.Digest != idx3.String() || !f3.Signed() {
		t.Fatalf("%s: digest %s (want %s), signed %v: %v", key3, f3.Digest, idx3, f3.Signed(), f3.VerificationErrors)
	}
	spans3 := proxy.take()
	ch3 := chain(spans3)
	counts3 := countKinds(spans3)

	// 2. 1,000 concurrent lookups of another cold image on a fresh service.
	const conc = 1000
	key2 := proxy.host + "/team/multi2:v1"
	lk2 := newService()
	var wg sync.WaitGroup
	errs := make([]error, conc)
	start := make(chan struct{})
	for i := range conc {
		wg.Go(func() {
			<-start
			f, err := lk2.Facts(context.Background(), key2)
			if err == nil && (f.Digest != idx2.String() || !f.Signed()) {
				err = fmt.Errorf("digest %s signed %v: %v", f.Digest, f.Signed(), f.VerificationErrors)
			}
			errs[i] = err
		})
	}
	t2 := time.Now()
	close(start)
	wg.Wait()
	wallConc := time.Since(t2)
	nerr := 0
	for _, err := range errs {
		if err != nil {
			if nerr == 0 {
				t.Errorf("concurrent %s: %v", key2, err)
			}
			nerr++
		}
	}
	spans2 := proxy.take()
	counts2 := countKinds(spans2)
	ch2 := chain(spans2)

	// Report.
	w := &strings.Builder{}
	fmt.Fprintf(w, "Cold path — %s, %s, nproc %d, GOMAXPROCS %d; loadavg at start: %s\n\n",
		time.Now().UTC().Format(time.RFC3339), cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), loadStart)
	fmt.Fprintf(w, "Image: OCI index with 2 platforms (linux/amd64, linux/arm64), a keyless bundle attached as an OCI referrer to the index and to each child. Key `host/team/multi:v1` (tag). Every registry request is delayed %v by a reverse proxy on 127.0.0.1 before it is forwarded.\n\n", rtt)
	fmt.Fprintf(w, "| figure | value |\n|---|---|\n")
	fmt.Fprintf(w, "| cold Facts wall time | %.1f ms (%.1f × RTT) |\n", ms(wall), float64(wall)/float64(rtt))
	fmt.Fprintf(w, "| registry requests (cold) | %d |\n", len(spans1))
	fmt.Fprintf(w, "| sequential round trips on the critical path | **%d** (target ≤ 4) |\n", len(ch))
	fmt.Fprintf(w, "| warm Facts of the same key | %.3f ms, %d requests |\n", ms(warm), warmReqs)
	fmt.Fprintf(w, "| cold Facts of another repository, registry contacted before (same service) | %.1f ms (%.1f × RTT), %d requests, **%d** round trips |\n",
		ms(wallKnown), float64(wallKnown)/float64(rtt), len(spans3), len(ch3))
	fmt.Fprintf(w, "| 1,000 concurrent cold Facts (second image, fresh service) wall | %.1f ms, %d errors |\n", ms(wallConc), nerr)
	fmt.Fprintf(w, "| registry requests for the 1,000 | %d (one cold lookup: %d) |\n", len(spans2), len(spans1))
	fmt.Fprintf(w, "| sequential round trips, 1,000 concurrent | %d |\n\n", len(ch2))
	fmt.Fprintf(w, "Registry requests by kind:\n\n")
	kindsTable(w, []string{"one cold lookup", "registry contacted before (other repository)", "1,000 concurrent (other image)"}, counts1, counts3, counts2)
	fmt.Fprintf(w, "\nCritical path (one cold lookup), times relative to the Facts call:\n\n| # | request | path | start ms | end ms |\n|---|---|---|---|---|\n")
	for i, s := range ch {
		fmt.Fprintf(w, "| %d | %s | `%s` | %.1f | %.1f |\n", i+1, s.kind, shortPath(s.path), ms(s.start.Sub(t0)), ms(s.end.Sub(t0)))
	}
	fmt.Fprintf(w, "\nCritical path (registry contacted before), times relative to that Facts call:\n\n| # | request | path | start ms | end ms |\n|---|---|---|---|---|\n")
	for i, s := range ch3 {
		fmt.Fprintf(w, "| %d | %s | `%s` | %.1f | %.1f |\n", i+1, s.kind, shortPath(s.path), ms(s.start.Sub(t3)), ms(s.end.Sub(t3)))
	}
	fmt.Fprintf(w, "\nEvery request (one cold lookup), by start time:\n\n| request | path | start ms | end ms |\n|---|---|---|---|\n")
	all := slices.Clone(spans1)
	slices.SortFunc(all, func(a, b span) int { return a.start.Compare(b.start) })
	for _, s := range all {
		fmt.Fprintf(w, "| %s | `%s` | %.1f | %.1f |\n", s.kind, shortPath(s.path), ms(s.start.Sub(t0)), ms(s.end.Sub(t0)))
	}

	out := os.Getenv("BENCH_OUT")
	if out == "" {
		root, err := filepath.Abs("../..")
		if err != nil {
			t.Fatal(err)
		}
		out = filepath.Join(root, ".dev", "bench")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(out, "cold.md"), []byte(w.String()))
	t.Logf("results in %s/cold.md:\n%s", out, w)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// shortPath abbreviates digests in a registry path: sha256:0123456789ab….
func shortPath(p string) string {
	if i := strings.Index(p, "sha256:"); i >= 0 && len(p) >= i+7+12 {
		rest := p[i+7+12:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			rest = rest[j:]
		} else {
			rest = ""
		}
		return p[:i+7+12] + "…" + rest
	}
	return p
}
