//go:build bench

// TestMemory measures imagegate's memory with many distinct cached digests
// (issue #7: RSS after 100,000 distinct cached digests ≤ 256 MiB; the cache
// bound holds). It is a measurement, not a timed assertion: it fails only if
// a lookup fails or a cache does not behave as configured (a key that must be
// warm causing registry requests).
//
// The registry is synthReg, a small handler in this process that serves a
// deterministic image for any repository synth/app-NNNNNN: manifest and
// config are computed from N on each request, so nothing is stored and
// 100,000 distinct digests cost the registry no memory. The config is a
// realistic one (created, user, env, OCI labels, history). It has no
// signatures: the referrers API answers an empty index and the legacy
// .sig/.att tags 404, so each image goes through signature discovery with a
// key configured and its facts say "no signature".
//
// Parts:
//
//  1. imagegate serve as a process, cache.maxEntries 100000, filled with
//     100,000 distinct repo:tag@digest keys through POST
//     /v1/externaldata/facts in batches of 1,000: VmRSS, VmHWM and the Go
//     heap (from /metrics) every 10,000 keys; the first batch again (must be
//     warm: 0 registry requests); a load run on cached keys with RSS sampled;
//     then idle until the next GC (at least 5 s after the load; the
//     runtime forces one every 2 minutes), and RSS again.
//
//  2. The same with cache.maxEntries 10000 (the default): RSS while
//     100,000 distinct keys go through; the last batch is warm, the first
//     was evicted.
//
//  3. In process, the lookup Service as the server builds it
//     (server.NewLookup), runtime.ReadMemStats around each fill, fresh
//     Service each time: bytes per entry of the parsed-reference cache, of
//     the facts cache, and of the tag cache; and a signed entry (the benchfix
//     keyless fixture) against an unsigned one.
//
//  4. (profile, not in the defaults) imagegate's server (server.Run) in
//     this process, cache.maxEntries as part 1, filled with the same keys
//     through POST /v1/externaldata/facts: live heap per key after
//     runtime.GC, and a heap profile (inuse_space, every allocation
//     sampled at BENCH_MEMORY_PROFILE_RATE bytes, default 4096) written
//     to BENCH_OUT/memory-heap.pprof for `go tool pprof -top`.
//
//     go test -tags bench -count=1 -v -run TestMemory ./test/bench/
//
// BENCH_MEMORY_GOMEMLIMIT (default unset) is passed to the server processes
// of parts 1 and 2 as GOMEMLIMIT (e.g. 230MiB, what the deploy manifest sets
// for a 256 MiB container); without it they run with whatever GOMEMLIMIT the
// test's environment has (normally none).
//
// BENCH_OUT (default .dev/bench) receives memory.md. BENCH_MEMORY_KEYS
// (default 100000) is the number of distinct keys of parts 1 and 2,
// BENCH_MEMORY_INPROC (default 20000) the keys per fill in part 3,
// BENCH_MEMORY_IDLE (default 150s, 0 to skip) how long part 1 waits for that
// GC. BENCH_MEMORY_REPOS (default 0: one repository per image) spreads the
// images of parts 1 and 2 over that many repositories; BENCH_MEMORY_PARTS
// (default cached,bound,per-entry) selects parts. Anything but the defaults
// writes memory-repos<N>-<parts>.md instead of memory.md, and
// BENCH_MEMORY_GOMEMLIMIT adds -gomemlimit<value> to the name.
package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/lookup"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/server"
	"github.com/imagegate/imagegate/server/config"
	"github.com/imagegate/imagegate/test/bench/benchfix"
)

// synthReg serves synthetic images for any synth/app-NNNNNN.
type synthReg struct {
	host     string
	requests atomic.Int64
	// repos > 0 spreads the images over that many repositories (image n in
	// synth/app-<n mod repos>); 0 gives every image its own repository.
	repos int
	// byDigest maps the manifest and config digests of every image key
	// returned to the image number (the tag names it too: v<n>).
	byDigest sync.Map
}

// synthImage is image n: its manifest, config and their digests.
type synthImage struct {
	manifest, config       []byte
	digest, configDigest   string
	layerDigest, diffIDHex string
}

func sha(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }

func newSynthImage(n int) synthImage {
	var im synthImage
	seed := sha256.Sum256([]byte("synth-" + strconv.Itoa(n)))
	im.diffIDHex = hex.EncodeToString(seed[:])
	layer := sha256.Sum256(seed[:])
	im.layerDigest = "sha256:" + hex.EncodeToString(layer[:])
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Second).Format(time.RFC3339)
	cfg := map[string]any{
		"created":      created,
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"User":       "65532",
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			"Entrypoint": []string{"/app"},
			"WorkingDir": "/",
			"Labels": map[string]string{
				"org.opencontainers.image.source":   fmt.Sprintf("https://github.com/team/app-%06d", n),
				"org.opencontainers.image.revision": hex.EncodeToString(seed[:20]),
				"org.opencontainers.image.version":  fmt.Sprintf("1.%d.0", n),
				"org.opencontainers.image.created":  created,
			},
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + im.diffIDHex}},
		"history": []map[string]any{{"created": created, "created_by": "COPY /app /app # buildkit", "comment": "buildkit.dockerfile.v0"}},
	}
	im.config, _ = json.Marshal(cfg)
	im.configDigest = sha(im.config)
	im.manifest, _ = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": im.configDigest, "size": len(im.config)},
		"layers":        []map[string]any{{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": im.layerDigest, "size": 3_145_728 + n%1000}},
	})
	im.digest = sha(im.manifest)
	return im
}

func startSynthReg(t *testing.T) *synthReg {
	t.Helper()
	s := &synthReg{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.host = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(s.serve)}
	go srv.Serve(ln) //nolint:errcheck // closed with the test
	t.Cleanup(func() { srv.Close() })
	return s
}

func synthError(w http.ResponseWriter, code int, what string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"unknown"}]}`, what)
}

func (s *synthReg) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/v2/" || p == "/v2" {
		w.WriteHeader(http.StatusOK)
		return
	}
	s.requests.Add(1)
	rest, ok := strings.CutPrefix(p, "/v2/synth/app-")
	if !ok || len(rest) < 7 || rest[6] != '/' {
		synthError(w, http.StatusNotFound, "NAME_UNKNOWN")
		return
	}
	if _, err := strconv.Atoi(rest[:6]); err != nil {
		synthError(w, http.StatusNotFound, "NAME_UNKNOWN")
		return
	}
	kind, ref, _ := strings.Cut(rest[7:], "/")
	n := -1
	if v, ok := s.byDigest.Load(ref); ok {
		n = v.(int)
	} else if t, ok := strings.CutPrefix(ref, "v"); ok {
		if i, err := strconv.Atoi(t); err == nil {
			n = i
		}
	}
	if n < 0 && kind != "referrers" {
		code := "MANIFEST_UNKNOWN" // .sig, .att, referrers fallback tags
		if kind == "blobs" {
			code = "BLOB_UNKNOWN"
		}
		synthError(w, http.StatusNotFound, code)
		return
	}
	im := newSynthImage(max(n, 0))
	send := func(mediaType string, body []byte, digest string) {
		w.Header().Set("Content-Type", mediaType)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Docker-Content-Digest", digest)
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	}
	switch kind {
	case "manifests":
		if ref == "v"+strconv.Itoa(n) || ref == im.digest {
			send("application/vnd.oci.image.manifest.v1+json", im.manifest, im.digest)
			return
		}
		synthError(w, http.StatusNotFound, "MANIFEST_UNKNOWN") // .sig, .att, referrers fallback tags
	case "blobs":
		if ref == im.configDigest {
			send("application/vnd.oci.image.config.v1+json", im.config, im.configDigest)
			return
		}
		synthError(w, http.StatusNotFound, "BLOB_UNKNOWN")
	case "referrers":
		body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
		send("application/vnd.oci.image.index.v1+json", body, sha(body))
	default:
		synthError(w, http.StatusNotFound, "UNSUPPORTED")
	}
}

// key is image n as repo:v<n>@digest (tag false: repo@digest).
func (s *synthReg) key(n int, tag bool) string {
	im := newSynthImage(n)
	s.byDigest.Store(im.digest, n)
	s.byDigest.Store(im.configDigest, n)
	r := n
	if s.repos > 0 {
		r = n % s.repos
	}
	if tag {
		return fmt.Sprintf("%s/synth/app-%06d:v%d@%s", s.host, r, n, im.digest)
	}
	return fmt.Sprintf("%s/synth/app-%06d@%s", s.host, r, im.digest)
}

// procStatus is a field of /proc/PID/status in bytes ("VmRSS", "VmHWM").
func procStatus(pid int, field string) int64 {
	for _, l := range strings.Split(readFile(fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return -1
}

// goMetrics reads the Go runtime gauges of a server's /metrics.
func (e *env) goMetrics(base string) map[string]float64 {
	t := e.t
	t.Helper()
	resp, err := e.client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	m := map[string]float64{}
	for _, l := range strings.Split(buf.String(), "\n") {
		if !strings.HasPrefix(l, "go_") {
			continue
		}
		f := strings.Fields(l)
		if len(f) == 2 {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				m[f[0]] = v
			}
		}
	}
	return m
}

func mib(b float64) string { return fmt.Sprintf("%.1f", b/(1<<20)) }

// memSample is one reading of a server process.
type memSample struct {
	keys              int
	rss, hwm          int64
	heapInuse, heapGo float64 // go_memstats_heap_inuse_bytes, go_memstats_sys_bytes
	nextGC            float64
	requests          int64 // registry requests since the previous sample
	secs              float64
}

func (e *env) sample(p *proc, keys int, reg *synthReg, last *int64, start time.Time) memSample {
	m := e.goMetrics(p.base)
	r := reg.requests.Load()
	s := memSample{keys: keys, rss: procStatus(p.cmd.Process.Pid, "VmRSS"), hwm: procStatus(p.cmd.Process.Pid, "VmHWM"),
		heapInuse: m["go_memstats_heap_inuse_bytes"], heapGo: m["go_memstats_sys_bytes"], nextGC: m["go_memstats_next_gc_bytes"],
		requests: r - *last, secs: time.Since(start).Seconds()}
	*last = r
	return s
}

func sampleTable(w *strings.Builder, ss []memSample) {
	fmt.Fprintf(w, "| distinct keys sent | VmRSS MiB | VmHWM MiB | Go heap in use MiB | Go sys MiB | next GC target MiB | registry requests since previous row | elapsed s |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range ss {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %d | %.0f |\n", s.keys, mib(float64(s.rss)), mib(float64(s.hwm)), mib(s.heapInuse), mib(s.heapGo), mib(s.nextGC), s.requests, s.secs)
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s: %q", name, s)
	}
	return n
}

func TestMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("memory: not in -short")
	}
	total := envInt(t, "BENCH_MEMORY_KEYS", 100_000)
	inproc := envInt(t, "BENCH_MEMORY_INPROC", 20_000)
	idle := time.Duration(envInt(t, "BENCH_MEMORY_IDLE", 150)) * time.Second
	const batch = 1000
	e := newEnv(t)
	loadStart := readFile("/proc/loadavg")
	reg := startSynthReg(t)
	reg.repos = envInt(t, "BENCH_MEMORY_REPOS", 0)
	parts := os.Getenv("BENCH_MEMORY_PARTS")
	if parts == "" {
		parts = "cached,bound,per-entry"
	}
	part := func(name string) bool { return slices.Contains(strings.Split(parts, ","), name) }
	memLimit := os.Getenv("BENCH_MEMORY_GOMEMLIMIT")
	if part("profile") {
		// Before anything the profile should see is allocated.
		runtime.MemProfileRate = envInt(t, "BENCH_MEMORY_PROFILE_RATE", 4096)
	}
	key := signaturetest.NewSigningKey(t)
	pub := key.WritePublicKey(t, e.work)

	baseCfg := func(maxEntries int) *config.Config {
		cfg := config.Default()
		cfg.Registries.Allow = []string{reg.host}
		cfg.Registries.Insecure = []string{reg.host}
		cfg.Registries.Private = []string{reg.host}
		// A key, so every image goes through signature discovery.
		cfg.Trust.Keys = map[string]string{"release": pub}
		cfg.Cache.MaxEntries = maxEntries
		// Nothing expires during the run (unsigned facts default to 1m).
		cfg.Cache.TagTTL = config.Duration(time.Hour)
		cfg.Cache.UnsignedTTL = config.Duration(time.Hour)
		cfg.Cache.FactsTTL = config.Duration(time.Hour)
		cfg.Budget = config.Duration(30 * time.Second)
		cfg.Limits.FetchTimeout = config.Duration(30 * time.Second)
		cfg.Log.Level = "warn"
		return cfg
	}
	keys := make([]string, total)
	for i := range keys {
		keys[i] = reg.key(i, true)
	}

	w := &strings.Builder{}
	fmt.Fprintf(w, "Memory — %s, %s, nproc %d; loadavg at start: %s\n\n", time.Now().UTC().Format(time.RFC3339), cpuModel(), runtime.NumCPU(), loadStart)
	repos := "each in its own repository"
	if reg.repos > 0 {
		repos = fmt.Sprintf("spread over %d repositories", reg.repos)
	}
	gogc := os.Getenv("GOGC") // inherited by the server processes
	if gogc == "" {
		gogc = "default (100)"
	}
	if memLimit != "" {
		fmt.Fprintf(w, "**Server processes run with GOMEMLIMIT=%s** (BENCH_MEMORY_GOMEMLIMIT); GOGC %s (the test's environment).\n\n", memLimit, gogc)
	} else {
		fmt.Fprintf(w, "Server processes run with GOGC %s and GOMEMLIMIT %q (the test's environment).\n\n", gogc, os.Getenv("GOMEMLIMIT"))
	}
	fmt.Fprintf(w, "Parts: %s. imagegate serve as a process; %d distinct keys `host/synth/app-NNNNNN:vN@sha256:…` (synthetic unsigned single-platform images, %s; a key configured so each goes through signature discovery) sent to POST /v1/externaldata/facts in batches of %d.\n\n", parts, total, repos, batch)

	var results struct {
		fillRSS, fillHWM, idleRSS int64
	}

	// fill starts imagegate with maxEntries, sends every key, and returns
	// the process and the samples.
	fill := func(maxEntries int) (*proc, []memSample) {
		cfg := baseCfg(maxEntries)
		cfg.Listen = freeAddr(t)
		cfg.TLS.CertFile, cfg.TLS.KeyFile = e.bundle.CertFile, e.bundle.KeyFile
		raw, _ := json.MarshalIndent(cfg, "", "  ")
		cfgFile := filepath.Join(e.work, fmt.Sprintf("memory-%d.yaml", maxEntries))
		write(t, cfgFile, raw)
		if memLimit != "" {
			// The server process inherits the environment.
			t.Setenv("GOMEMLIMIT", memLimit)
		}
		ig := e.start(fmt.Sprintf("imagegate-memory-%d", maxEntries), "https://"+cfg.Listen, filepath.Join(e.bin, "imagegate"), "serve", "--config", cfgFile)
		var last int64 = reg.requests.Load()
		start := time.Now()
		ss := []memSample{e.sample(ig, 0, reg, &last, start)}
		for i := 0; i < len(keys); i += batch {
			items := e.facts(ig.base, keys[i:min(i+batch, len(keys))])
			for _, it := range items {
				if it.Error != "" {
					t.Fatalf("maxEntries %d: %s: %s", maxEntries, it.Key, it.Error)
				}
			}
			if n := i + batch; n%10_000 == 0 || n >= len(keys) {
				ss = append(ss, e.sample(ig, min(n, len(keys)), reg, &last, start))
				s := ss[len(ss)-1]
				t.Logf("maxEntries %d: %d keys: VmRSS %s MiB, VmHWM %s MiB, heap in use %s MiB, %d registry requests, %.0fs",
					maxEntries, s.keys, mib(float64(s.rss)), mib(float64(s.hwm)), mib(s.heapInuse), s.requests, s.secs)
			}
		}
		return ig, ss
	}
	// again sends keys[from:to] again and returns the registry requests.
	again := func(ig *proc, from, to int) int64 {
		r0 := reg.requests.Load()
		for i := from; i < to; i += batch {
			for _, it := range e.facts(ig.base, keys[i:min(i+batch, to)]) {
				if it.Error != "" {
					t.Fatalf("%s: %s", it.Key, it.Error)
				}
			}
		}
		return reg.requests.Load() - r0
	}

	// Part 1: every key cached.
	if part("cached") {
		ig, ss := fill(max(total, 100_000))
		perLookup := float64(ss[len(ss)-1].requests)
		for _, s := range ss[1 : len(ss)-1] {
			perLookup += float64(s.requests)
		}
		perLookup /= float64(total)
		end := ss[len(ss)-1]
		results.fillRSS, results.fillHWM = end.rss, end.hwm
		fmt.Fprintf(w, "### cache.maxEntries %d: every key cached\n\n", max(total, 100_000))
		sampleTable(w, ss)
		warmFirst := again(ig, 0, min(batch, total))
		if warmFirst != 0 {
			t.Errorf("maxEntries %d: the first %d keys again caused %d registry requests, want 0 (all cached)", max(total, 100_000), batch, warmFirst)
		}
		fmt.Fprintf(w, "\nRegistry requests per cold lookup: %.2f. The first %d keys sent again: %d registry requests (all %d still cached).\n\n", perLookup, batch, warmFirst, total)

		// Load on top of the full cache: 100-key requests, 8 workers, RSS sampled.
		body := filepath.Join(e.work, "memory-load.json")
		req, _ := json.Marshal(externaldata.NewProviderRequest(keys[total-100:]))
		write(t, body, req)
		var peak atomic.Int64
		stopSampling := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				if r := procStatus(ig.cmd.Process.Pid, "VmRSS"); r > peak.Load() {
					peak.Store(r)
				}
				select {
				case <-stopSampling:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
		lr := e.load(ig, "facts", ig.base+"/v1/externaldata/facts", body, 100, 8, 0, `"idempotent":true`, `"error":`)
		close(stopSampling)
		wg.Wait()
		afterLoad := e.sample(ig, total, reg, new(int64), time.Now())
		fmt.Fprintf(w, "**Under load** (loadgen, 100 cached keys per request, 8 workers, %v): %.0f keys/s, p99 %.2f ms; VmRSS peak %s MiB (sampled every 50 ms), after %s MiB; VmHWM %s MiB.\n\n",
			e.duration, lr.KeysPerS, lr.P99Ms, mib(float64(peak.Load())), mib(float64(afterLoad.rss)), mib(float64(afterLoad.hwm)))

		if idle > 0 {
			m0 := e.goMetrics(ig.base)
			deadline := time.Now().Add(idle)
			gcs := m0["go_gc_duration_seconds_count"]
			for time.Now().Before(deadline) {
				time.Sleep(2 * time.Second)
				if m := e.goMetrics(ig.base); m["go_gc_duration_seconds_count"] > gcs && time.Since(deadline.Add(-idle)) > 5*time.Second {
					break
				}
			}
			time.Sleep(3 * time.Second) // let the scavenger act on what the GC freed
			s := e.sample(ig, total, reg, new(int64), deadline.Add(-idle))
			results.idleRSS = s.rss
			fmt.Fprintf(w, "**Idle: after the first GC at least 5 s after the load** (%.0f s after it; GC cycles %v → %v; without one within BENCH_MEMORY_IDLE, the reading at its end): VmRSS %s MiB, Go heap in use %s MiB, Go sys %s MiB, next GC target %s MiB (GOGC 100: about twice the heap live after that GC).\n\n",
				s.secs, m0["go_gc_duration_seconds_count"], e.goMetrics(ig.base)["go_gc_duration_seconds_count"], mib(float64(s.rss)), mib(s.heapInuse), mib(s.heapGo), mib(s.nextGC))
		}
		ig.stop()
	}

	// Part 2: the default bound.
	if part("bound") {
		ig, ss := fill(10_000)
		fmt.Fprintf(w, "### cache.maxEntries 10000 (default): %d distinct keys go through\n\n", total)
		sampleTable(w, ss)
		lastBatch := again(ig, total-batch, total)
		firstBatch := again(ig, 0, batch)
		if lastBatch != 0 {
			t.Errorf("maxEntries 10000: the last %d keys again caused %d registry requests, want 0", batch, lastBatch)
		}
		if firstBatch == 0 {
			t.Errorf("maxEntries 10000: the first %d keys of %d were still cached", batch, total)
		}
		fmt.Fprintf(w, "\nThe last %d keys again: %d registry requests (cached). The first %d keys again: %d registry requests (evicted: the bound holds).\n\n", batch, lastBatch, batch, firstBatch)
		ig.stop()
	}

	// Part 3: bytes per entry, in process.
	if part("per-entry") {
		fmt.Fprintf(w, "### Bytes per cache entry (in process, `server.NewLookup`, %d keys per fill, live heap after runtime.GC)\n\n", inproc)
		// measure is the live heap a Service holds after fill, per key: warm
		// runs first and is not counted (connection pools, the verifier's lazy
		// state), then fill, each between two runtime.GC.
		measure := func(cfg *config.Config, warm, fill func(s *lookup.Service), n int) float64 {
			svc, err := server.NewLookup(cfg, nil, 1)
			if err != nil {
				t.Fatal(err)
			}
			if warm != nil {
				warm(svc)
			}
			var a, b runtime.MemStats
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&a)
			fill(svc)
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&b)
			runtime.KeepAlive(svc)
			return float64(int64(b.HeapAlloc)-int64(a.HeapAlloc)) / float64(n)
		}
		parallel := func(n int, f func(i int)) {
			var wg sync.WaitGroup
			next := atomic.Int64{}
			for range 64 {
				wg.Go(func() {
					for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
						f(i)
					}
				})
			}
			wg.Wait()
		}
		cfg := baseCfg(max(inproc, 100_000) + 1000)
		// Other images than parts 1–2 (nothing shared with them), each in
		// its own repository, except fewRepoKeys: the same number of images
		// in 100 repositories.
		savedRepos := reg.repos
		reg.repos = 0
		tagKeys, digestKeys, fewRepoKeys := make([]string, inproc), make([]string, inproc), make([]string, inproc)
		for i := range inproc {
			tagKeys[i], digestKeys[i] = reg.key(200_000+i, true), reg.key(300_000+i, false)
		}
		reg.repos = 100
		for i := range inproc {
			fewRepoKeys[i] = reg.key(600_000+i, true)
		}
		reg.repos = savedRepos
		factsOf := func(keys []string) func(s *lookup.Service) {
			return func(s *lookup.Service) {
				parallel(len(keys), func(i int) {
					if _, err := s.Facts(context.Background(), keys[i]); err != nil {
						t.Errorf("%s: %v", keys[i], err)
					}
				})
			}
		}
		parseOf := func(keys []string) func(s *lookup.Service) {
			return func(s *lookup.Service) {
				for _, k := range keys {
					if _, err := s.Parse(k); err != nil {
						t.Fatalf("%s: %v", k, err)
					}
				}
			}
		}
		// The first warmN keys of each fill warm the Service; the rest count.
		const warmN = 64
		refsTag := measure(cfg, nil, parseOf(tagKeys), inproc)
		refsDigest := measure(cfg, nil, parseOf(digestKeys), inproc)
		digestAll := measure(cfg, factsOf(digestKeys[:warmN]), factsOf(digestKeys[warmN:]), inproc-warmN)
		// Other images for the tag+digest fill (the synthetic registry has no
		// state, but different names keep the two fills independent anyway).
		for i := range inproc {
			tagKeys[i] = reg.key(400_000+i, true)
		}
		tagAll := measure(cfg, factsOf(tagKeys[:warmN]), factsOf(tagKeys[warmN:]), inproc-warmN)
		fewRepos := measure(cfg, factsOf(fewRepoKeys[:warmN]), factsOf(fewRepoKeys[warmN:]), inproc-warmN)
		factsEntry := digestAll - refsDigest
		tagEntry := tagAll - refsTag - factsEntry

		// Signed entries: the benchfix fixture (keyless bundle, verified).
		const signedN = 300
		im := benchfix.Signed(t, warmN+signedN)
		scfg := im.Config(t)
		scfg.Cache.MaxEntries = cfg.Cache.MaxEntries
		var sample []byte
		signedOf := func(keys []string) func(s *lookup.Service) {
			return func(s *lookup.Service) {
				parallel(len(keys), func(i int) {
					f, err := s.Facts(context.Background(), keys[i])
					if err != nil || len(f.Signatures) == 0 {
						t.Errorf("%s: %v, facts %+v", keys[i], err, f)
						return
					}
					if i == 0 {
						sample, _ = json.MarshalIndent(f, "", "  ")
					}
				})
			}
		}
		signedAll := measure(scfg, signedOf(im.Keys[:warmN]), signedOf(im.Keys[warmN:]), signedN)
		var unsignedSample []byte
		measure(cfg, nil, func(s *lookup.Service) {
			f, err := s.Facts(context.Background(), reg.key(500_000, true))
			if err != nil {
				t.Fatal(err)
			}
			unsignedSample, _ = json.MarshalIndent(f, "", "  ")
		}, 1)
		// The cached Facts value alone: what the facts cache keeps (no
		// image, reference or tagDigest), decoded from its JSON n times.
		var bare facts.Facts
		if err := json.Unmarshal(unsignedSample, &bare); err != nil {
			t.Fatal(err)
		}
		bare.Image, bare.Reference, bare.TagDigest = "", facts.Reference{}, ""
		bareJSON, _ := json.Marshal(bare)
		values := make([]*facts.Facts, inproc)
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		for i := range values {
			values[i] = new(facts.Facts)
			if err := json.Unmarshal(bareJSON, values[i]); err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&b)
		runtime.KeepAlive(values)
		factsValue := float64(int64(b.HeapAlloc)-int64(a.HeapAlloc)) / float64(inproc)
		for _, v := range values {
			v.Config.Labels = nil
		}
		runtime.GC()
		runtime.ReadMemStats(&a)
		runtime.KeepAlive(values)
		labelsValue := float64(int64(b.HeapAlloc)-int64(a.HeapAlloc)) / float64(inproc)

		fmt.Fprintf(w, "| what | bytes per key |\n|---|---|\n")
		fmt.Fprintf(w, "| parsed reference (refs cache), `repo:tag@digest` key | %.0f |\n", refsTag)
		fmt.Fprintf(w, "| parsed reference (refs cache), `repo@digest` key | %.0f |\n", refsDigest)
		fmt.Fprintf(w, "| facts (facts cache), unsigned synthetic image | %.0f |\n", factsEntry)
		fmt.Fprintf(w, "| … of which the cached `*facts.Facts` value alone (decoded from its JSON) | %.0f |\n", factsValue)
		fmt.Fprintf(w, "| … … of which its 4 config labels (map and strings) | %.0f |\n", labelsValue)
		fmt.Fprintf(w, "| tag → digest (tag cache) | %.0f |\n", tagEntry)
		fmt.Fprintf(w, "| **all caches, `repo:tag@digest` key, unsigned** | **%.0f** |\n", tagAll)
		fmt.Fprintf(w, "| all caches, `repo@digest` key, unsigned | %.0f |\n", digestAll)
		fmt.Fprintf(w, "| all caches, `repo:tag@digest` key, keyless-signed (benchfix, %d keys, 1 label) | %.0f |\n", signedN, signedAll)
		fmt.Fprintf(w, "| all caches, `repo:tag@digest` key, unsigned, the images in 100 repositories | %.0f |\n", fewRepos)
		fmt.Fprintf(w, "| per-repository state outside the caches (one repository per image minus 100 repositories) | %.0f |\n", tagAll-fewRepos)
		fmt.Fprintf(w, "\nEach fill: %d keys warm the Service first (connection pools, lazily built verifier state) and are not counted. The in-process registry handler shares the heap; its garbage is collected before each reading.\n\n", warmN)
		compact := func(b []byte) int { var c bytes.Buffer; _ = json.Compact(&c, b); return c.Len() }
		fmt.Fprintf(w, "Facts JSON as served: unsigned synthetic image %d bytes, keyless-signed fixture image %d bytes.\n\n", compact(unsignedSample), compact(sample))
		fmt.Fprintf(w, "<details><summary>The two facts objects</summary>\n\n```json\n%s\n```\n\n```json\n%s\n```\n\n</details>\n\n", unsignedSample, sample)
		fmt.Fprintf(w, "From these, 100,000 keyless-signed `repo:tag@digest` keys hold about %s MiB of live heap.\n\n", mib(signedAll*100_000))
	}
	// Part 4: the server in process, and a heap profile.
	if part("profile") {
		cfg := baseCfg(max(total, 100_000))
		cfg.Listen = freeAddr(t)
		cfg.TLS.CertFile, cfg.TLS.KeyFile = e.bundle.CertFile, e.bundle.KeyFile
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		var a, b runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&a)
		go func() { done <- server.Run(ctx, cfg, slog.New(slog.DiscardHandler), ready) }()
		select {
		case <-ready:
		case err := <-done:
			t.Fatal(err)
		}
		base := "https://" + cfg.Listen
		for i := 0; i < len(keys); i += batch {
			for _, it := range e.facts(base, keys[i:min(i+batch, len(keys))]) {
				if it.Error != "" {
					t.Fatalf("profile: %s: %s", it.Key, it.Error)
				}
			}
		}
		e.client.Transport.(*http.Transport).CloseIdleConnections()
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&b)
		perKey := float64(int64(b.HeapAlloc)-int64(a.HeapAlloc)) / float64(total)
		out := os.Getenv("BENCH_OUT")
		if out == "" {
			out = filepath.Join(e.root, ".dev", "bench")
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		pf, err := os.Create(filepath.Join(out, "memory-heap.pprof"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(pf, 0); err != nil {
			t.Fatal(err)
		}
		pf.Close()
		fmt.Fprintf(w, "### The server in process (`server.Run`), %d keys cached\n\nLive heap after runtime.GC: %s MiB more than before the server started, %.0f bytes per key (the test's own key list and registry state were allocated before). Heap profile (MemProfileRate %d): `%s`; `go tool pprof -top -sample_index=inuse_space %s`.\n\n",
			total, mib(float64(int64(b.HeapAlloc)-int64(a.HeapAlloc))), perKey, runtime.MemProfileRate, pf.Name(), pf.Name())
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
	}
	if results.fillRSS > 0 {
		fmt.Fprintf(w, "Target: RSS ≤ 256 MiB with 100,000 cached digests. Measured VmRSS after the fill: %s MiB (VmHWM %s MiB)", mib(float64(results.fillRSS)), mib(float64(results.fillHWM)))
		if results.idleRSS > 0 {
			fmt.Fprintf(w, ", idle after GC: %s MiB", mib(float64(results.idleRSS)))
		}
		fmt.Fprintf(w, ".\n\n")
	}
	fmt.Fprintf(w, "loadavg at the end: %s\n", readFile("/proc/loadavg"))

	out := os.Getenv("BENCH_OUT")
	if out == "" {
		out = filepath.Join(e.root, ".dev", "bench")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	file := "memory.md"
	if reg.repos > 0 || parts != "cached,bound,per-entry" {
		file = fmt.Sprintf("memory-repos%d-%s.md", reg.repos, strings.ReplaceAll(parts, ",", "+"))
	}
	if memLimit != "" {
		file = strings.TrimSuffix(file, ".md") + "-gomemlimit" + memLimit + ".md"
	}
	write(t, filepath.Join(out, file), []byte(w.String()))
	t.Logf("results in %s/%s:\n%s", out, file, w)
}
