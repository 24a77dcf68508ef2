//go:build bench

// TestCosign puts `cosign verify` (v3 and v2, the binaries `make tools`
// builds) side by side with imagegate, in one run, on the same images in the
// same in-process registry: a key-signed bundle (cosign v3 sign, OCI
// referrer), a key-signed legacy .sig (cosign v2 sign) and a keyless bundle
// from the offline test Sigstore (verified by cosign against its
// trusted_root.json, --offline). For each image it times, cold process per
// invocation, N times: cosign v3 verify, cosign v2 verify, `imagegate facts`,
// and the server: cold (the first facts request for the image after the
// server started) and warm (one facts request on a kept-alive HTTPS
// connection). Every invocation must verify: a cosign exit code other than 0,
// or facts without the expected verified signature, fails the test; nothing
// that failed is ever timed.
//
// Two columns: the registry behind a pass-through proxy (0 ms added, so the
// proxy only counts requests) and behind the same proxy adding 20 ms before
// each request (cold_test.go's delayProxy), because real registries are not
// on loopback.
//
//	go test -tags bench -count=1 -v -run TestCosign ./test/bench/
//
// BENCH_OUT (default .dev/bench) receives cosign.md; BENCH_COSIGN_N (default
// 10) is the repetitions per tool, image and column; BENCH_RTT (default
// 20ms) the delay of the second column.
package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/server/config"
	"github.com/imagegate/imagegate/test/bench/benchfix"
)

// cosignImage is one signed image and how each tool verifies it.
type cosignImage struct {
	name   string // table label
	repo   string
	digest v1.Hash
	// args returns the cosign verify arguments (without the image) for a
	// major version; nil if that version cannot verify this image.
	args func(major string) []string
	// want checks a verified signature in imagegate's facts.
	want func(s facts.Signature) bool
}

// timing is the repetitions of one tool on one image in one column.
type timing struct {
	d        []time.Duration
	requests []int // registry requests per invocation, as the proxy saw them
	note     string
}

func (tm timing) pct(p float64) time.Duration {
	if len(tm.d) == 0 {
		return 0
	}
	s := slices.Clone(tm.d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1 // nearest rank
	return s[max(0, min(i, len(s)-1))]
}

func (tm timing) reqs() string {
	if len(tm.requests) == 0 {
		return "–"
	}
	s := slices.Clone(tm.requests)
	slices.Sort(s)
	if s[0] == s[len(s)-1] {
		return strconv.Itoa(s[0])
	}
	return fmt.Sprintf("%d–%d", s[0], s[len(s)-1])
}

func msStr(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func TestCosign(t *testing.T) {
	if testing.Short() {
		t.Skip("cosign comparison: not in -short")
	}
	n := 10
	if s := os.Getenv("BENCH_COSIGN_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("BENCH_COSIGN_N: %q", s)
		}
	}
	rtt := 20 * time.Millisecond
	if s := os.Getenv("BENCH_RTT"); s != "" {
		var err error
		if rtt, err = time.ParseDuration(s); err != nil {
			t.Fatalf("BENCH_RTT: %v", err)
		}
	}
	e := newEnv(t)
	loadStart := readFile("/proc/loadavg")
	cosigns := map[string]signaturetest.Cosign{"v3": signaturetest.FindCosign(t, "v3"), "v2": signaturetest.FindCosign(t, "v2")}
	versions := map[string]string{}
	for major, c := range cosigns {
		out, err := c.Run(t, "", "version")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, "GitVersion:"); ok {
				versions[major] = strings.TrimSpace(v)
			}
		}
	}

	// The registry and the images.
	reg := registrytest.New(t)
	kp := cosigns["v3"].GenerateKeyPair(t, t.TempDir())
	ss := signaturetest.NewSigstore(t)
	rootPath := ss.WriteTrustedRoot(t, t.TempDir())
	emptyRoot := filepath.Join(e.work, "empty_trusted_root.json")
	// What signaturetest gives cosign v2 to verify a key signature offline:
	// a trusted root with nothing in it (v2 otherwise fetches one from TUF).
	write(t, emptyRoot, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	spec := func(i int) registrytest.Image {
		return registrytest.Image{Created: time.Now().Add(-time.Duration(i) * time.Hour), Labels: map[string]string{"org.opencontainers.image.source": "https://github.com/team/app"}}
	}
	httpFlags := []string{"--allow-http-registry=true", "--allow-insecure-registry=true", "--output=json"}
	keyArgs := func(layout string) func(string) []string {
		return func(major string) []string {
			a := []string{"--key", kp.PublicKey, "--insecure-ignore-tlog=true", "--new-bundle-format=" + strconv.FormatBool(layout == "bundle")}
			if major == "v2" {
				a = append(a, "--trusted-root", emptyRoot)
			}
			return append(a, httpFlags...)
		}
	}
	keySigner := func(format string) func(facts.Signature) bool {
		return func(s facts.Signature) bool {
			return s.Format == format && s.Signer.Kind == "key" && s.Signer.Key == "release"
		}
	}
	var images []*cosignImage

	bundle := &cosignImage{name: "key, bundle (cosign v3 sign)", repo: "team/key-bundle", args: keyArgs("bundle"), want: keySigner("bundle")}
	bundle.digest = reg.PushImage(t, bundle.repo, "v1", spec(1))
	cosigns["v3"].Sign(t, kp, reg.Host+"/"+bundle.repo+"@"+bundle.digest.String(), signaturetest.Bundle)
	images = append(images, bundle)

	legacy := &cosignImage{name: "key, legacy .sig (cosign v2 sign)", repo: "team/key-legacy", args: keyArgs("legacy"), want: keySigner("legacy")}
	legacy.digest = reg.PushImage(t, legacy.repo, "v1", spec(2))
	cosigns["v2"].Sign(t, kp, reg.Host+"/"+legacy.repo+"@"+legacy.digest.String(), signaturetest.Legacy)
	images = append(images, legacy)

	keyless := &cosignImage{name: "keyless, bundle (offline test Sigstore)", repo: "team/keyless",
		args: func(major string) []string {
			return append([]string{"--trusted-root", rootPath, "--offline=true", "--new-bundle-format=true",
				"--certificate-identity", benchfix.Identity.Subject, "--certificate-oidc-issuer", benchfix.Identity.Issuer}, httpFlags...)
		},
		want: func(s facts.Signature) bool {
			return s.Format == "bundle" && s.Signer.Kind == "keyless" && s.Signer.Issuer == benchfix.Identity.Issuer && s.Signer.Subject == benchfix.Identity.Subject
		}}
	keyless.digest = reg.PushImage(t, keyless.repo, "v1", spec(3))
	sb := ss.SignImage(t, benchfix.Identity, keyless.digest.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{})
	signaturetest.AttachReferrer(t, reg.Host, keyless.repo, benchfix.Subject(t, reg.Host, keyless.repo, keyless.digest), sb, signature.CosignSignPredicate)
	images = append(images, keyless)

	// Two proxies in front of the same registry: 0 ms (counts requests) and rtt.
	type column struct {
		name  string
		proxy *delayProxy
	}
	columns := []column{{"loopback", newDelayProxy(t, reg.Host, 0)}}
	if rtt > 0 {
		columns = append(columns, column{fmt.Sprintf("%v RTT", rtt), newDelayProxy(t, reg.Host, rtt)})
	}

	// One config for `imagegate facts` and the server: the same key as
	// cosign, the same trusted root, every proxy allowed.
	cfg := config.Default()
	for _, c := range columns {
		cfg.Registries.Allow = append(cfg.Registries.Allow, c.proxy.host)
	}
	cfg.Registries.Insecure, cfg.Registries.Private = cfg.Registries.Allow, cfg.Registries.Allow
	cfg.Trust.Keys = map[string]string{"release": kp.PublicKey}
	cfg.Trust.TrustedRoots = map[string]string{"test": rootPath}
	cfg.TLS.CertFile, cfg.TLS.KeyFile = e.bundle.CertFile, e.bundle.KeyFile
	cfgFile := filepath.Join(e.work, "cosign-imagegate.yaml")
	writeConfig := func() {
		raw, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		write(t, cfgFile, raw)
	}
	writeConfig()

	checkFacts := func(what string, im *cosignImage, raw []byte) {
		t.Helper()
		var f facts.Facts
		var probe struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil || probe.Error != "" {
			t.Fatalf("%s %s: error %v %q: %.1000s", what, im.name, err, probe.Error, raw)
		}
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatalf("%s %s: %v", what, im.name, err)
		}
		if f.Digest != im.digest.String() || !slices.ContainsFunc(f.Signatures, im.want) {
			t.Fatalf("%s %s: facts without the expected verified signature (digest %s): signatures %+v, verificationErrors %q",
				what, im.name, f.Digest, f.Signatures, f.VerificationErrors)
		}
	}

	// results[column][image][tool]
	tools := []string{"cosign v3", "cosign v2", "imagegate facts", "server cold", "server warm"}
	results := map[string]map[string]map[string]*timing{}
	for _, col := range columns {
		results[col.name] = map[string]map[string]*timing{}
		for _, im := range images {
			ref := col.proxy.host + "/" + im.repo + "@" + im.digest.String()
			r := map[string]*timing{}
			results[col.name][im.name] = r
			for _, tool := range tools {
				r[tool] = &timing{}
			}
			// cosign, cold process each time.
			for _, major := range []string{"v3", "v2"} {
				tm := r["cosign "+major]
				args := im.args(major)
				if args == nil {
					tm.note = "n/a"
					continue
				}
				for range n {
					col.proxy.take()
					start := time.Now()
					out, err := cosigns[major].Run(t, "", append(append([]string{"verify"}, args...), ref)...)
					d := time.Since(start)
					if err != nil {
						t.Fatalf("%s: cosign %s verify %s failed: %v", col.name, major, im.name, err)
					}
					if !strings.Contains(out, im.digest.Hex) {
						t.Fatalf("%s: cosign %s verify %s: exit 0 but the output does not name the digest:\n%s", col.name, major, im.name, out)
					}
					tm.d = append(tm.d, d)
					tm.requests = append(tm.requests, len(col.proxy.take()))
				}
			}
			// imagegate facts, cold process each time.
			tm := r["imagegate facts"]
			for range n {
				col.proxy.take()
				cmd := exec.Command(filepath.Join(e.bin, "imagegate"), "facts", "--config", cfgFile, ref)
				var stderr strings.Builder
				cmd.Stderr = &stderr
				start := time.Now()
				out, err := cmd.Output()
				d := time.Since(start)
				if err != nil {
					t.Fatalf("imagegate facts %s: %v\n%s", ref, err, stderr.String())
				}
				var items []json.RawMessage
				if err := json.Unmarshal(out, &items); err != nil || len(items) != 1 {
					t.Fatalf("imagegate facts %s: %v: %.1000s", ref, err, out)
				}
				checkFacts(col.name+": imagegate facts", im, items[0])
				tm.d = append(tm.d, d)
				tm.requests = append(tm.requests, len(col.proxy.take()))
			}
			// The server, cold: a fresh process per repetition, the first
			// facts request for the image after /healthz answered.
			tm = r["server cold"]
			for range n {
				cfg.Listen = freeAddr(t)
				writeConfig()
				ig := e.start("imagegate-cold", "https://"+cfg.Listen, filepath.Join(e.bin, "imagegate"), "serve", "--config", cfgFile)
				col.proxy.take()
				start := time.Now()
				items := e.facts(ig.base, []string{ref})
				d := time.Since(start)
				tm.requests = append(tm.requests, len(col.proxy.take()))
				ig.stop()
				if len(items) != 1 || items[0].Error != "" {
					t.Fatalf("server cold %s: %+v", ref, items)
				}
				checkFacts(col.name+": server cold", im, items[0].Value.(json.RawMessage))
				tm.d = append(tm.d, d)
			}
			// The server, warm: one process, the image looked up once,
			// then n requests on the same keep-alive connection.
			cfg.Listen = freeAddr(t)
			writeConfig()
			ig := e.start("imagegate-warm", "https://"+cfg.Listen, filepath.Join(e.bin, "imagegate"), "serve", "--config", cfgFile)
			e.facts(ig.base, []string{ref})
			tm = r["server warm"]
			for range n {
				col.proxy.take()
				start := time.Now()
				items := e.facts(ig.base, []string{ref})
				d := time.Since(start)
				tm.requests = append(tm.requests, len(col.proxy.take()))
				if len(items) != 1 || items[0].Error != "" {
					t.Fatalf("server warm %s: %+v", ref, items)
				}
				checkFacts(col.name+": server warm", im, items[0].Value.(json.RawMessage))
				tm.d = append(tm.d, d)
			}
			ig.stop()
			t.Logf("%s / %s: v3 %s ms, v2 %s ms, facts %s ms, server cold %s ms, warm %s ms (medians)", col.name, im.name,
				msStr(r["cosign v3"].pct(.5)), msStr(r["cosign v2"].pct(.5)), msStr(r["imagegate facts"].pct(.5)), msStr(r["server cold"].pct(.5)), msStr(r["server warm"].pct(.5)))
		}
	}

	// The report.
	w := &strings.Builder{}
	fmt.Fprintf(w, "cosign side by side — %s, %s, nproc %d; cosign %s and %s; loadavg at start: %s, at end: %s\n\n",
		time.Now().UTC().Format(time.RFC3339), cpuModel(), runtime.NumCPU(), versions["v3"], versions["v2"], loadStart, readFile("/proc/loadavg"))
	fmt.Fprintf(w, "%d repetitions per tool, image and column; every invocation verified (cosign exit 0 naming the digest; imagegate facts listing the expected verified signature). Times are wall clock, median / p90 in ms; requests are registry requests per invocation as the proxy saw them.\n\n", n)
	for _, col := range columns {
		fmt.Fprintf(w, "### Registry: %s\n\n", col.name)
		fmt.Fprintf(w, "| image | cosign v3 verify | cosign v2 verify | `imagegate facts` | server, cold | server, warm |\n|---|---|---|---|---|---|\n")
		for _, im := range images {
			r := results[col.name][im.name]
			fmt.Fprintf(w, "| %s |", im.name)
			for _, tool := range tools {
				tm := r[tool]
				if tm.note != "" {
					fmt.Fprintf(w, " %s |", tm.note)
					continue
				}
				fmt.Fprintf(w, " %s / %s (%s req) |", msStr(tm.pct(.5)), msStr(tm.pct(.9)), tm.reqs())
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "\nRatios of medians (cosign ÷ imagegate; above 1 means imagegate is faster):\n\n")
		fmt.Fprintf(w, "| image | v3 ÷ `facts` | v2 ÷ `facts` | v3 ÷ server cold | v2 ÷ server cold | v3 ÷ server warm | v2 ÷ server warm |\n|---|---|---|---|---|---|---|\n")
		for _, im := range images {
			r := results[col.name][im.name]
			fmt.Fprintf(w, "| %s |", im.name)
			for _, against := range []string{"imagegate facts", "server cold", "server warm"} {
				for _, major := range []string{"v3", "v2"} {
					c, g := r["cosign "+major], r[against]
					if c.note != "" || g.pct(.5) == 0 {
						fmt.Fprintf(w, " – |")
						continue
					}
					fmt.Fprintf(w, " %.1f× |", float64(c.pct(.5))/float64(g.pct(.5)))
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
	out := os.Getenv("BENCH_OUT")
	if out == "" {
		out = filepath.Join(e.root, ".dev", "bench")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(out, "cosign.md"), []byte(w.String()))
	t.Logf("results in %s/cosign.md:\n%s", out, w)
}
