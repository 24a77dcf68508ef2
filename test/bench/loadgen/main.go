// Command loadgen is the load generator of `make bench`: a closed loop of N
// workers, each with its own keep-alive HTTPS (TLS 1.3, HTTP/1.1) connection,
// POSTing one body to one URL on loopback for a fixed duration, optionally
// paced to a total rate. It prints one JSON object: requests, errors,
// throughput and latency percentiles.
//
// Latency is measured from sending a request to reading the whole response.
// Paced runs are closed-loop too (a late response delays that worker's next
// request), so at rates near saturation the percentiles understate queueing
// (coordinated omission); the benchmark paces at about 50 % of saturation.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/imagegate/imagegate/test/bench/loadreport"
)

// maxSamples bounds the latencies one worker records.
const maxSamples = 1 << 20

type result = loadreport.Report

func main() {
	var (
		target   = flag.String("url", "", "https URL to POST to (loopback only)")
		bodyFile = flag.String("body", "", "request body file")
		caFile   = flag.String("ca", "", "CA certificate (PEM) the server's certificate chains to")
		workers  = flag.Int("workers", 4, "concurrent workers (one connection each)")
		duration = flag.Duration("duration", 5*time.Second, "measured duration")
		warmup   = flag.Duration("warmup", time.Second, "unmeasured warm-up before it (connections, caches)")
		rate     = flag.Float64("rate", 0, "total requests per second to pace to; 0 = as fast as answered")
		keys     = flag.Int("keys", 1, "keys (or containers) per request, for keys/s")
		expect   = flag.String("expect", "", "a response body must contain this")
		reject   = flag.String("reject", "", "a response body must not contain this")
	)
	flag.Parse()
	if err := run(*target, *bodyFile, *caFile, *workers, *duration, *warmup, *rate, *keys, *expect, *reject); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(target, bodyFile, caFile string, workers int, duration, warmup time.Duration, rate float64, keys int, expect, reject string) error {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "https" || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost" && u.Hostname() != "::1") {
		return fmt.Errorf("-url %q: want an https URL on loopback", target)
	}
	if workers < 1 || workers > 1024 || duration <= 0 || duration > 10*time.Minute {
		return fmt.Errorf("want 1 ≤ -workers ≤ 1024 and 0 < -duration ≤ 10m")
	}
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("%s: no certificates", caFile)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		MaxIdleConnsPerHost: workers,
		MaxConnsPerHost:     workers,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	check := func(b []byte, status int) error {
		if status != http.StatusOK {
			return fmt.Errorf("status %d: %.200s", status, b)
		}
		if expect != "" && !bytes.Contains(b, []byte(expect)) {
			return fmt.Errorf("response lacks %q: %.300s", expect, b)
		}
		if reject != "" && bytes.Contains(b, []byte(reject)) {
			return fmt.Errorf("response contains %q: %.300s", reject, b)
		}
		return nil
	}
	post := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return err
		}
		return check(b, resp.StatusCode)
	}

	type workerOut struct {
		lat      []time.Duration
		errs     int
		firstErr error
		trunc    bool
	}
	outs := make([]workerOut, workers)
	start := time.Now().Add(warmup)
	end := start.Add(duration)
	ctx, cancel := context.WithDeadline(context.Background(), end.Add(30*time.Second))
	defer cancel()
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(workers) / rate * float64(time.Second))
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[w]
			o.lat = make([]time.Duration, 0, 4096)
			next := time.Now()
			if interval > 0 {
				next = next.Add(interval * time.Duration(w) / time.Duration(workers))
			}
			for {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
					if now := time.Now(); next.Before(now.Add(-interval)) {
						next = now // fell behind: do not burst to catch up
					}
				}
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := post(ctx)
				t1 := time.Now()
				if t0.Before(start) {
					continue // warm-up
				}
				if err != nil {
					if o.errs == 0 {
						o.firstErr = err
					}
					o.errs++
					continue
				}
				if len(o.lat) == maxSamples {
					o.trunc = true
					continue
				}
				o.lat = append(o.lat, t1.Sub(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := duration.Seconds()
	r := result{Workers: workers, Rate: rate, Seconds: elapsed}
	var all []time.Duration
	for _, o := range outs {
		all = append(all, o.lat...)
		r.Errors += o.errs
		if o.firstErr != nil && r.FirstErr == "" {
			r.FirstErr = o.firstErr.Error()
		}
		r.Truncated = r.Truncated || o.trunc
	}
	slices.Sort(all)
	r.Requests = len(all)
	r.RPS = float64(r.Requests) / elapsed
	r.KeysPerS = r.RPS * float64(keys)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)-1))
		return float64(all[i]) / float64(time.Millisecond)
	}
	r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs = pct(0.50), pct(0.90), pct(0.99), pct(1)
	return json.NewEncoder(os.Stdout).Encode(r)
}
