//go:build bench

// Package bench is the load comparison of `make bench` (build tag bench, so
// `go test ./...` never runs it). TestLoad builds imagegate, the load
// generator (loadgen) and the minimal baseline server (baseline), and runs
// them as separate processes on loopback: imagegate serving a config file
// that allows a real in-process registry (registrytest) holding 100 signed
// images, warmed once; the baseline answering the same ProviderRequests from
// the facts imagegate returned. Each setting is run against imagegate and
// then the baseline, back to back, so both see the same background load.
//
//	go test -tags bench -count=1 -v -run TestLoad ./test/bench/
//
// BENCH_OUT (default .dev/bench) receives load.md and load.json;
// BENCH_DURATION (default 4s) is each run's measured time; BENCH_WORKERS
// (default 1,2,4,8) the worker counts swept to find saturation.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"

	"github.com/imagegate/imagegate/server/certs"
	"github.com/imagegate/imagegate/test/bench/benchfix"
	"github.com/imagegate/imagegate/test/bench/loadreport"
)

// result is loadgen's output plus what the driver measured around it.
type result struct {
	Target   string `json:"target"`
	Workload string `json:"workload"`
	Keys     int    `json:"keys"`
	loadreport.Report
	ServerCPU float64 `json:"serverCPU"` // CPU seconds per wall second, warm-up included
}

type proc struct {
	name string
	cmd  *exec.Cmd
	base string // https://addr
	// stop ends the process (SIGTERM, then SIGKILL after 15s) and waits for
	// it; it runs at the end of the test anyway, and only once.
	stop func()
}

type env struct {
	t        *testing.T
	root     string
	bin      string
	work     string
	bundle   *certs.Bundle
	client   *http.Client
	duration time.Duration
	workers  []int
}

func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load comparison: not in -short")
	}
	e := newEnv(t)
	loadStart := readFile("/proc/loadavg")

	im := benchfix.Signed(t, 100)
	cfg := im.Config(t)
	cfg.Listen = freeAddr(t)
	cfg.TLS.CertFile, cfg.TLS.KeyFile = e.bundle.CertFile, e.bundle.KeyFile
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(e.work, "imagegate.yaml") // JSON is YAML
	write(t, cfgFile, cfgJSON)
	ig := e.start("imagegate", "https://"+cfg.Listen, filepath.Join(e.bin, "imagegate"), "serve", "--config", cfgFile)

	// Warm every key once (the cold fetch is not measured here) and keep
	// the values imagegate answers: the baseline serves exactly these.
	values := map[string]json.RawMessage{}
	for _, it := range e.facts(ig.base, im.Keys) {
		if it.Error != "" {
			t.Fatalf("warming %s: %s", it.Key, it.Error)
		}
		values[it.Key] = it.Value.(json.RawMessage)
	}
	if len(values) != len(im.Keys) {
		t.Fatalf("warming: %d values for %d keys", len(values), len(im.Keys))
	}
	factsJSON, _ := json.Marshal(values)
	factsFile := filepath.Join(e.work, "facts.json")
	write(t, factsFile, factsJSON)
	im.Reg.ResetCounts()

	baseAddr := freeAddr(t)
	bl := e.start("baseline", "https://"+baseAddr, filepath.Join(e.bin, "baseline"), "-listen", baseAddr, "-cert", e.bundle.CertFile, "-key", e.bundle.KeyFile, "-facts", factsFile)
	// Same request, same answer.
	a, b := e.facts(ig.base, im.Keys[:10]), e.facts(bl.base, im.Keys[:10])
	if !sameItems(a, b) {
		t.Fatalf("imagegate and baseline answer differently:\n%v\n%v", a, b)
	}

	var all []result
	report := &strings.Builder{}
	fmt.Fprintf(report, "Load comparison — %s, %s, nproc %d, GOMAXPROCS %d; loadavg at start: %s\n\n",
		time.Now().UTC().Format(time.RFC3339), cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), loadStart)
	fmt.Fprintf(report, "Each run: %v measured after 1s warm-up; workers swept %v; saturation = the best throughput of the sweep; latency at a paced rate of 50 %% of it (4 workers).\n\n", e.duration, e.workers)

	// External data: batches of 1, 10 and 100 keys.
	fmt.Fprintf(report, "### External-data facts, warm (keys repo:tag@digest, each with a verified keyless signature)\n\n")
	fmt.Fprintf(report, "| keys/request | server | saturation keys/s (req/s, workers, server CPU) | keys per server CPU-second | p50 / p99 ms at 50 %% (achieved req/s) | imagegate ÷ baseline keys/s | p99 imagegate ÷ baseline |\n|---|---|---|---|---|---|---|\n")
	for _, n := range []int{1, 10, 100} {
		body := filepath.Join(e.work, fmt.Sprintf("facts-%d.json", n))
		req, _ := json.Marshal(externaldata.NewProviderRequest(im.Keys[:n]))
		write(t, body, req)
		targets := []*proc{ig, bl}
		sat := map[string]result{}
		for _, w := range e.workers {
			for _, p := range targets {
				r := e.load(p, "facts", p.base+"/v1/externaldata/facts", body, n, w, 0, `"idempotent":true`, `"error":`)
				all = append(all, r)
				if r.KeysPerS > sat[p.name].KeysPerS {
					sat[p.name] = r
				}
			}
		}
		half := map[string]result{}
		for _, p := range targets {
			r := e.load(p, "facts", p.base+"/v1/externaldata/facts", body, n, 4, sat[p.name].RPS/2, `"idempotent":true`, `"error":`)
			all = append(all, r)
			half[p.name] = r
		}
		for _, p := range targets {
			s, h := sat[p.name], half[p.name]
			ratio, p99 := "", ""
			if p == ig {
				ratio = fmt.Sprintf("**%.0f %%** (per CPU-second: %.0f %%)", 100*s.KeysPerS/sat["baseline"].KeysPerS, 100*perCPU(s)/perCPU(sat["baseline"]))
				p99 = fmt.Sprintf("**%.2f×**", h.P99Ms/half["baseline"].P99Ms)
			}
			fmt.Fprintf(report, "| %d | %s | %.0f (%.0f, %d, %.2f) | %.0f | %.2f / %.2f (%.0f) | %s | %s |\n", n, p.name, s.KeysPerS, s.RPS, s.Workers, s.ServerCPU, perCPU(s), h.P50Ms, h.P99Ms, h.RPS, ratio, p99)
		}
	}

	// ImageReviews with the bundled policy and the signature rule.
	fmt.Fprintf(report, "\n### ImageReviews, bundled policy with the signature rule, warm facts (namespace prod; every image admitted)\n\n")
	fmt.Fprintf(report, "| containers | saturation reviews/s (workers, server CPU) | reviews per server CPU-second | p50 / p99 ms at 50 %% (achieved req/s) |\n|---|---|---|---|\n")
	// reviewRows sweeps the workers for reviews of 1 and 5 containers and
	// writes one table row each: saturation, then latency at half of it.
	reviewRows := func(p *proc, workload string) {
		for _, n := range []int{1, 5} {
			body := filepath.Join(e.work, fmt.Sprintf("review-%d.json", n))
			write(t, body, imageReview(im.Keys[:n]))
			var sat result
			for _, w := range e.workers {
				r := e.load(p, workload, p.base+"/v1/imagereview", body, n, w, 0, `"allowed":true`, "")
				all = append(all, r)
				if r.RPS > sat.RPS {
					sat = r
				}
			}
			h := e.load(p, workload, p.base+"/v1/imagereview", body, n, 4, sat.RPS/2, `"allowed":true`, "")
			all = append(all, h)
			fmt.Fprintf(report, "| %d | %.0f (%d, %.2f) | %.0f | %.2f / %.2f (%.0f) |\n", n, sat.RPS, sat.Workers, sat.ServerCPU, sat.RPS/sat.ServerCPU, h.P50Ms, h.P99Ms, h.RPS)
		}
	}
	reviewRows(ig, "imagereview")

	// The floor under the ImageReview figures: the same server and requests
	// with a policy that admits without evaluating anything (TLS, HTTP, JSON
	// decoding and encoding, the limiter; no rule, no facts).
	trivialDir := filepath.Join(e.work, "trivial-policy")
	if err := os.MkdirAll(trivialDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(trivialDir, "review.rego"), []byte("package imagegate.review\n\ndecision := {\"allowed\": true, \"reason\": \"trivial\", \"auditAnnotations\": {}}\n"))
	tcfg := *cfg
	tcfg.Listen = freeAddr(t)
	tcfg.Policy.Dir = trivialDir
	tcfgJSON, err := json.MarshalIndent(tcfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tcfgFile := filepath.Join(e.work, "imagegate-trivial.yaml")
	write(t, tcfgFile, tcfgJSON)
	igRSS := vmRSS(ig.cmd.Process.Pid)
	ig.stop() // one server at a time on the 2 cores
	tg := e.start("imagegate-trivial", "https://"+tcfg.Listen, filepath.Join(e.bin, "imagegate"), "serve", "--config", tcfgFile)
	fmt.Fprintf(report, "\n### ImageReviews, the floor: a policy that admits without evaluating anything (`decision := {\"allowed\": true, …}`), same server and requests\n\n")
	fmt.Fprintf(report, "| containers | saturation reviews/s (workers, server CPU) | reviews per server CPU-second | p50 / p99 ms at 50 %% (achieved req/s) |\n|---|---|---|---|\n")
	reviewRows(tg, "imagereview-trivial")

	fmt.Fprintf(report, "\nRegistry requests during the load runs (all warm): %d. RSS at the end: imagegate %s, baseline %s. loadavg at the end: %s\n",
		im.Reg.Total(), igRSS, vmRSS(bl.cmd.Process.Pid), readFile("/proc/loadavg"))
	fmt.Fprintf(report, "\n<details><summary>Every run</summary>\n\n| target | workload | keys | workers | paced req/s | req/s | keys/s | p50 | p90 | p99 | max ms | server CPU | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range all {
		fmt.Fprintf(report, "| %s | %s | %d | %d | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %d |\n", r.Target, r.Workload, r.Keys, r.Workers, r.Rate, r.RPS, r.KeysPerS, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs, r.ServerCPU, r.Errors)
	}
	fmt.Fprintf(report, "\n</details>\n")

	if n := im.Reg.Total(); n != 0 {
		t.Errorf("registry saw %d requests during the warm load runs, want 0", n)
	}
	out := os.Getenv("BENCH_OUT")
	if out == "" {
		out = filepath.Join(e.root, ".dev", "bench")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.MarshalIndent(all, "", "  ")
	write(t, filepath.Join(out, "load.json"), raw)
	write(t, filepath.Join(out, "load.md"), []byte(report.String()))
	t.Logf("results in %s/load.md:\n%s", out, report)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: root, bin: t.TempDir(), work: t.TempDir(), duration: 4 * time.Second, workers: []int{1, 2, 4, 8}}
	if s := os.Getenv("BENCH_DURATION"); s != "" {
		if e.duration, err = time.ParseDuration(s); err != nil {
			t.Fatalf("BENCH_DURATION: %v", err)
		}
	}
	if s := os.Getenv("BENCH_WORKERS"); s != "" {
		e.workers = nil
		for _, f := range strings.Split(s, ",") {
			w, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || w < 1 || w > 256 {
				t.Fatalf("BENCH_WORKERS: %q", s)
			}
			e.workers = append(e.workers, w)
		}
	}
	for name, pkg := range map[string]string{"imagegate": "./cmd/imagegate", "loadgen": "./test/bench/loadgen", "baseline": "./test/bench/baseline"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(e.bin, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	if e.bundle, err = certs.Generate(filepath.Join(e.work, "certs"), nil); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.bundle.CAPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	return e
}

// start runs a server process until the test ends and waits for /healthz.
func (e *env) start(name, base, path string, args ...string) *proc {
	t := e.t
	t.Helper()
	logf, err := os.Create(filepath.Join(e.work, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := sync.OnceFunc(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	t.Cleanup(stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := e.client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &proc{name: name, cmd: cmd, base: base, stop: stop}
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s exited before serving:\n%s", name, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within 30s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) facts(base string, keys []string) []externaldata.Item {
	t := e.t
	t.Helper()
	body, _ := json.Marshal(externaldata.NewProviderRequest(keys))
	resp, err := e.client.Post(base+"/v1/externaldata/facts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct {
		Response struct {
			Items       []externaldata.Item `json:"items"`
			SystemError string              `json:"systemError"`
		} `json:"response"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != http.StatusOK || r.Response.SystemError != "" {
		t.Fatalf("POST %s: %d %v %.500s", base, resp.StatusCode, err, raw)
	}
	for i := range r.Response.Items {
		v, _ := json.Marshal(r.Response.Items[i].Value)
		r.Response.Items[i].Value = json.RawMessage(v)
	}
	return r.Response.Items
}

// load runs loadgen once against p and measures p's CPU time around it.
func (e *env) load(p *proc, workload, url, body string, keys, workers int, rate float64, expect, reject string) result {
	t := e.t
	t.Helper()
	args := []string{"-url", url, "-body", body, "-ca", e.bundle.CAFile, "-workers", strconv.Itoa(workers),
		"-duration", e.duration.String(), "-warmup", "1s", "-keys", strconv.Itoa(keys), "-expect", expect, "-reject", reject}
	if rate > 0 {
		args = append(args, "-rate", strconv.FormatFloat(rate, 'f', 1, 64))
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.duration+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "loadgen"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cpu0, wall0 := cpuSeconds(p.cmd.Process.Pid), time.Now()
	out, err := cmd.Output()
	cpu1, wall1 := cpuSeconds(p.cmd.Process.Pid), time.Now()
	if err != nil {
		t.Fatalf("loadgen %v: %v\n%s", args, err, stderr.String())
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("loadgen output %q: %v", out, err)
	}
	r.Target, r.Workload, r.Keys = p.name, workload, keys
	r.ServerCPU = (cpu1 - cpu0) / wall1.Sub(wall0).Seconds()
	if r.Errors > 0 {
		t.Errorf("%s %s keys=%d workers=%d: %d errors, first: %s", p.name, workload, keys, workers, r.Errors, r.FirstErr)
	}
	t.Logf("%-9s %-11s keys=%-3d workers=%-2d rate=%-7.0f → %7.0f req/s %8.0f keys/s  p50 %6.2f ms  p99 %6.2f ms  cpu %.2f",
		p.name, workload, keys, workers, rate, r.RPS, r.KeysPerS, r.P50Ms, r.P99Ms, r.ServerCPU)
	return r
}

// perCPU is keys answered per CPU-second the server used: a throughput
// measure less sensitive than keys/s to what else runs on the machine.
func perCPU(r result) float64 {
	if r.ServerCPU == 0 {
		return 0
	}
	return r.KeysPerS / r.ServerCPU
}

func imageReview(images []string) []byte {
	var cs []map[string]string
	for _, i := range images {
		cs = append(cs, map[string]string{"image": i})
	}
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview",
		"spec":   map[string]any{"containers": cs, "namespace": "prod"},
		"status": map[string]any{"allowed": false},
	})
	return b
}

func sameItems(a, b []externaldata.Item) bool {
	norm := func(items []externaldata.Item) any {
		raw, _ := json.Marshal(items)
		var v any
		_ = json.Unmarshal(raw, &v)
		return v
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// cpuSeconds is a process's user+system CPU time (/proc/PID/stat, in clock
// ticks of 1/100 s).
func cpuSeconds(pid int) float64 {
	s := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100
}

func vmRSS(pid int) string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
