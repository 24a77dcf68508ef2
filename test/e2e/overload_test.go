//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagegate/imagegate/server/certs"
)

// Overload parameters: OVERLOAD_DURATION (default 60s) is how long the
// server is driven at OVERLOAD_FACTOR (default 2) times the throughput it
// saturated at.
const (
	overloadBudget = 2500 * time.Millisecond // the config's budget (the default)
	// A request is answered within the budget plus this, or it failed (it
	// hung): the limiter sheds a waiting request after budget/2, a running
	// one answers at the budget and the server's deadline middleware stops
	// it at budget+1s; the rest is time before the handler (TLS, HTTP/2
	// framing) and the client's own scheduling, with the load generator on
	// the same small machine (2 shared cores here) as the server.
	overloadSlack = 5 * time.Second
	// Probes: each must answer within probeTimeout; a miss now and then
	// under a CPU overload is tolerated, but never failureThreshold in a
	// row (kubelet's default: that many consecutive failures restart the
	// pod) nor more than 5 % of them.
	probeTimeout     = 2 * time.Second
	failureThreshold = 3
	// Peak RSS may exceed the idle RSS by at most this. What the overload
	// can hold at once is bounded: 128 requests in progress and 128
	// waiting (limits.maxConcurrentRequests), each with a 1 MiB body limit
	// (the bodies here are < 1 KiB) and an OPA evaluation of a few hundred
	// KiB; ~1,000 client connections at ~40 KiB each (TLS and bufio
	// buffers, goroutine stacks); and the Go heap target doubling that
	// (GOGC=100). ~128 MiB covers it with room; an unbounded queue grows
	// past it within seconds at 2× saturation.
	overloadRSSGrowth = 256 << 20
	// Goroutines after the load may exceed those before by at most this
	// (a probe connection or two, timers winding down).
	overloadGoroutineSlack = 10
	// maxClientInFlight bounds the load generator's own requests in flight
	// (each its own connection): an open loop must not grow without bound
	// on the client side either. Requests not sent because of it count as
	// "client-limited", not as served or shed.
	maxClientInFlight = 1024
)

// TestOverload runs imagegate as a process (the bundled policy with no
// params: no registry needed), finds the throughput it saturates at with a
// closed loop, then drives it with an open loop at twice that rate for 60 s
// (image reviews and facts requests), and asserts: every request is either
// served (200), shed (503 with "overloaded:") or, for an image review whose
// budget ran out mid-evaluation, denied with a reason saying so (fail
// closed); none fails otherwise or
// takes longer than budget + slack; /healthz answers within 2 s (never
// three misses in a row, at most 5 % missed);
// RSS stays within a bound; the goroutine count after the load returns to
// within a few of what it was before.
//
//	make e2e E2E_RUN=TestOverload
func TestOverload(t *testing.T) {
	duration := 60 * time.Second
	if v := os.Getenv("OVERLOAD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("OVERLOAD_DURATION: %v", err)
		}
		duration = d
	}
	factor := 2.0
	if v := os.Getenv("OVERLOAD_FACTOR"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Fatalf("OVERLOAD_FACTOR %q: want a positive number", v)
		}
		factor = f
	}
	art := artifactsDir(t)
	procs := &processes{dir: filepath.Join(art, "logs")}
	if err := os.MkdirAll(procs.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { procs.stopAll(t) })
	bin := buildImagegate(t)
	b, err := certs.Generate(filepath.Join(art, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfgFile := filepath.Join(art, "imagegate.yaml")
	// Defaults except: requests are logged at warn, so a 60 s overload does
	// not write a log line per request (the log is not under test here).
	writeFile(t, cfgFile, fmt.Sprintf(`listen: %q
tls: {certFile: %q, keyFile: %q}
registries: {allow: ["ghcr.io"]}
budget: %s
log: {level: warn}
`, addr, b.CertFile, b.KeyFile, overloadBudget))
	p := procs.start(t, "imagegate", bin, []string{"serve", "--config", cfgFile}, nil)
	base := "https://" + addr
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CAPEM)
	// The load speaks HTTP/2, as both callers do (kube-apiserver's webhook
	// client; Gatekeeper's Go client): requests are streams on a few
	// connections. OVERLOAD_HTTP1=1 makes it HTTP/1.1 instead, one
	// connection per request in flight: a TLS handshake storm, which
	// starves the server of CPU before any request reaches the limiter.
	http1 := os.Getenv("OVERLOAD_HTTP1") == "1"
	newTransport := func() *http.Transport {
		return &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
			ForceAttemptHTTP2:   !http1,
			MaxIdleConnsPerHost: maxClientInFlight,
			DisableCompression:  true,
		}
	}
	// Probes open a new connection each time, as kubelet's do.
	probeTransport := newTransport()
	probeTransport.DisableKeepAlives = true
	probe := &http.Client{Transport: probeTransport, Timeout: probeTimeout}
	waitFor(t, "imagegate", p, 30*time.Second, func() error { return httpOK(probe, base+"/healthz") })

	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	review, _ := json.Marshal(map[string]any{
		"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview",
		"spec": map[string]any{"namespace": "default", "containers": []any{
			map[string]any{"image": "ghcr.io/team/app@" + digest},
			map[string]any{"image": "ghcr.io/team/sidecar:v1@" + digest},
		}},
	})
	facts := []byte(`{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{"keys":["quay.io/team/app:v1","Not A Reference"]}}`)
	// Every fourth request is a facts request: answered from the allowlist
	// and the reference parser, no registry.
	reqs := []struct {
		path, body, want string
	}{
		{"/v1/imagereview", string(review), `"allowed":true`},
		{"/v1/imagereview", string(review), `"allowed":true`},
		{"/v1/imagereview", string(review), `"allowed":true`},
		{"/v1/externaldata/facts", string(facts), `registry_not_allowed`},
	}

	load := newLoadClient(newTransport(), base)
	defer load.tr.CloseIdleConnections()

	// Warm up (connections, OPA's query cache), then measure what the
	// server looks like at rest.
	load.closedLoop(reqs, 4, 2*time.Second)
	load.tr.CloseIdleConnections()
	time.Sleep(time.Second)
	goroutinesBefore := metric(t, probe, base, "go_goroutines")
	rssBefore := rss(t, p.PID)

	// Saturation: a closed loop with plenty of workers for the cores.
	satWorkers := 8 * runtime.NumCPU()
	sat := load.closedLoop(reqs, satWorkers, 3*time.Second)
	if sat.failed > 0 || sat.ok == 0 {
		t.Fatalf("saturation run: %d served, %d failed (first: %s)", sat.ok, sat.failed, sat.firstFailure)
	}
	satRPS := float64(sat.ok) / 3
	rate := factor * satRPS
	t.Logf("saturation: %.0f requests/s with %d closed-loop workers (p50 %v, p99 %v); overload: %.0f requests/s (×%.1f) for %v",
		satRPS, satWorkers, sat.pct(0.5), sat.pct(0.99), rate, factor, duration)

	// The overload, with /healthz probed and RSS sampled alongside.
	ctx, cancel := context.WithCancel(context.Background())
	var side sync.WaitGroup
	var (
		healthMu       sync.Mutex
		healthFailures []string
		healthMax      time.Duration
		healthN        int
		healthRun      int // consecutive failures now
		healthMaxRun   int
		rssPeak        = rssBefore
		rssSamples     []int64
	)
	side.Add(2)
	go func() {
		defer side.Done()
		for ctx.Err() == nil {
			t0 := time.Now()
			err := httpOK(probe, base+"/healthz")
			d := time.Since(t0)
			healthMu.Lock()
			healthN++
			healthMax = max(healthMax, d)
			if err != nil {
				healthFailures = append(healthFailures, fmt.Sprintf("at %v: %v", time.Since(load.start).Round(time.Millisecond), err))
				healthRun++
				healthMaxRun = max(healthMaxRun, healthRun)
			} else {
				healthRun = 0
			}
			healthMu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	go func() {
		defer side.Done()
		for ctx.Err() == nil {
			v, err := rssOf(p.PID)
			if err != nil {
				return // the process is gone: the checks below say so
			}
			healthMu.Lock()
			rssPeak = max(rssPeak, v)
			rssSamples = append(rssSamples, v)
			healthMu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	shedBefore := metricSum(t, probe, base, "imagegate_http_requests_shed_total")
	over := load.openLoop(reqs, rate, duration)
	cancel()
	side.Wait()
	rssDuring := rssPeak
	shedMetric := metricSum(t, probe, base, "imagegate_http_requests_shed_total") - shedBefore

	// After: the client lets go of its connections; the server must return
	// to where it was.
	load.tr.CloseIdleConnections()
	var goroutinesAfter int64
	deadline := time.Now().Add(15 * time.Second)
	for {
		goroutinesAfter = metric(t, probe, base, "go_goroutines")
		if goroutinesAfter <= goroutinesBefore+overloadGoroutineSlack || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	rssAfter := rss(t, p.PID)
	after := load.closedLoop(reqs, 2, time.Second)

	t.Logf("overload: offered %.0f/s for %v: sent %d, served %d (%.0f/s), shed %d (%.0f/s; /metrics: %d), denied as the budget ran out %d, failed %d, client-limited %d; latency served p50 %v p99 %v max %v, shed p50 %v max %v",
		rate, duration, over.sent, over.ok, float64(over.ok)/duration.Seconds(), over.shed, float64(over.shed)/duration.Seconds(), shedMetric,
		over.expired, over.failed, over.clientLimited, over.pct(0.5), over.pct(0.99), over.max(), over.shedPct(0.5), over.shedMax())
	t.Logf("/healthz during the overload: %d probes, slowest %v, %d failed (%v timeout), at most %d in a row", healthN, healthMax.Round(time.Millisecond), len(healthFailures), probeTimeout, healthMaxRun)
	t.Logf("RSS: before %d MiB, peak during %d MiB, after %d MiB (samples every 1s: %s)", rssBefore>>20, rssDuring>>20, rssAfter>>20, mib(rssSamples))
	t.Logf("goroutines: before %d, after %d", goroutinesBefore, goroutinesAfter)
	t.Logf("after the overload: %d served, %d failed, p99 %v", after.ok, after.failed, after.pct(0.99))

	if exited, err := p.Exited(); exited {
		t.Fatalf("imagegate exited during the overload: %v\n%s", err, p.Tail(40))
	}
	if over.failed > 0 {
		t.Errorf("%d requests neither served nor shed with a reason; first: %s", over.failed, over.firstFailure)
	}
	if m := over.max(); m > overloadBudget+overloadSlack {
		t.Errorf("slowest answer %v, want within budget + slack (%v)", m, overloadBudget+overloadSlack)
	}
	if over.ok == 0 {
		t.Error("nothing was served during the overload: shedding everything is not degrading gracefully")
	}
	// The server may shed a request whose client already gave up.
	if int64(over.shed) > shedMetric || shedMetric > int64(over.shed+over.failed) {
		t.Errorf("client saw %d shed requests (and %d failures), /metrics counts %d", over.shed, over.failed, shedMetric)
	}
	if healthN == 0 || healthMaxRun >= failureThreshold || len(healthFailures)*20 > healthN {
		t.Errorf("/healthz failed %d of %d times during the overload (%v timeout), %d in a row at worst: want fewer than %d in a row and at most 5 %%: %s",
			len(healthFailures), healthN, probeTimeout, healthMaxRun, failureThreshold, strings.Join(healthFailures[:min(5, len(healthFailures))], "; "))
	}
	if rssDuring > rssBefore+overloadRSSGrowth {
		t.Errorf("RSS peaked at %d MiB, more than %d MiB over the %d MiB before", rssDuring>>20, overloadRSSGrowth>>20, rssBefore>>20)
	}
	if goroutinesAfter > goroutinesBefore+overloadGoroutineSlack {
		t.Errorf("goroutines: %d after the load, %d before: a leak (dump: kill -QUIT %d)", goroutinesAfter, goroutinesBefore, p.PID)
	}
	if after.failed > 0 || after.shed > 0 || after.expired > 0 || after.ok == 0 {
		t.Errorf("after the overload: %d served, %d shed, %d failed; want everything served (first failure: %s)", after.ok, after.shed, after.failed, after.firstFailure)
	}
}

// loadClient posts the request mix and classifies every answer.
type loadClient struct {
	tr     *http.Transport
	client *http.Client
	base   string
	start  time.Time
}

func newLoadClient(tr *http.Transport, base string) *loadClient {
	return &loadClient{tr: tr, client: &http.Client{Transport: tr, Timeout: overloadBudget + overloadSlack}, base: base}
}

type loadResult struct {
	mu            sync.Mutex
	sent          int
	ok, shed      int
	expired       int // image reviews denied (fail closed) because the budget ran out
	failed        int
	clientLimited int
	firstFailure  string
	lat, shedLat  []time.Duration
}

func (r *loadResult) record(status int, body []byte, err error, want string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fail := func(msg string) {
		r.failed++
		if r.firstFailure == "" {
			r.firstFailure = msg
		}
	}
	switch {
	case err != nil:
		fail(fmt.Sprintf("after %v: %v", d.Round(time.Millisecond), err))
	case status == http.StatusOK && bytes.Contains(body, []byte(want)):
		r.ok++
		r.lat = append(r.lat, d)
	case status == http.StatusServiceUnavailable && bytes.Contains(body, []byte(`"message":"imagegate could not evaluate image policy within its budget`)):
		// The budget ran out while the policy was evaluating: a 503 that
		// says why (the apiserver retries it, and never caches it as a
		// denial), answered within the budget.
		r.expired++
		r.lat = append(r.lat, d)
	case status == http.StatusServiceUnavailable && bytes.Contains(body, []byte("overloaded: ")):
		r.shed++
		r.shedLat = append(r.shedLat, d)
	default:
		fail(fmt.Sprintf("status %d after %v: %.300s", status, d.Round(time.Millisecond), body))
	}
}

func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))].Round(100 * time.Microsecond)
}

func (r *loadResult) pct(p float64) time.Duration     { return percentile(r.lat, p) }
func (r *loadResult) shedPct(p float64) time.Duration { return percentile(r.shedLat, p) }
func (r *loadResult) max() time.Duration {
	return max(percentile(r.lat, 1), percentile(r.shedLat, 1))
}
func (r *loadResult) shedMax() time.Duration { return percentile(r.shedLat, 1) }

func (l *loadClient) post(path, body string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, l.base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// closedLoop runs workers that each send the next request as soon as the
// previous one is answered.
func (l *loadClient) closedLoop(reqs []struct{ path, body, want string }, workers int, d time.Duration) *loadResult {
	r := &loadResult{}
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(end); i++ {
				q := reqs[i%len(reqs)]
				t0 := time.Now()
				status, body, err := l.post(q.path, q.body)
				r.record(status, body, err, q.want, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	r.sent = r.ok + r.shed + r.expired + r.failed
	return r
}

// openLoop sends requests at rate per second whatever the answers, each on
// its own goroutine (at most maxClientInFlight at once), for d, then waits
// for the answers.
func (l *loadClient) openLoop(reqs []struct{ path, body, want string }, rate float64, d time.Duration) *loadResult {
	r := &loadResult{}
	var inFlight atomic.Int64
	var wg sync.WaitGroup
	l.start = time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sent := 0
	for now := range tick.C {
		elapsed := now.Sub(l.start)
		if elapsed >= d {
			break
		}
		for due := int(elapsed.Seconds() * rate); sent < due; sent++ {
			if inFlight.Load() >= maxClientInFlight {
				r.mu.Lock()
				r.clientLimited++
				r.mu.Unlock()
				continue
			}
			q := reqs[sent%len(reqs)]
			inFlight.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer inFlight.Add(-1)
				t0 := time.Now()
				status, body, err := l.post(q.path, q.body)
				r.record(status, body, err, q.want, time.Since(t0))
			}()
		}
	}
	wg.Wait()
	r.sent = r.ok + r.shed + r.expired + r.failed
	return r
}

// metric reads one unlabelled value from /metrics.
func metric(t *testing.T, c *http.Client, base, name string) int64 {
	t.Helper()
	v, n := scrape(t, c, base, name)
	if n != 1 {
		t.Fatalf("/metrics: %d samples of %s, want 1", n, name)
	}
	return v
}

// metricSum adds up every sample of name (all label values; 0 if none).
func metricSum(t *testing.T, c *http.Client, base, name string) int64 {
	t.Helper()
	v, _ := scrape(t, c, base, name)
	return v
}

func scrape(t *testing.T, c *http.Client, base, name string) (sum int64, n int) {
	t.Helper()
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		sum += int64(v)
		n++
	}
	return sum, n
}

// rss is the process's resident set size in bytes (/proc/<pid>/status VmRSS).
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	v, err := rssOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func rssOf(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("RSS of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func mib(v []int64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatInt(x>>20, 10)
	}
	return strings.Join(s, " ")
}
