//go:build e2e

// Package e2e runs imagegate behind a real control plane: etcd,
// kube-apiserver and (TestGatekeeper) the Gatekeeper manager out of cluster
// (built by `make e2e-tools` into $IMAGEGATE_TOOLS/bin), two distribution
// registries, real cosign signatures, and imagegate built from this
// repository and started as a process. Everything listens on loopback;
// every process is tracked by PID and stopped when the test ends, and its
// log is kept (see artifactsDir).
//
// Run it with `make e2e`, or after `make tools e2e-tools`:
//
//	go test -tags e2e -count=1 -v ./test/e2e/ -run 'TestImagePolicyWebhook/break-glass'
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
)

// repoRoot is the module root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	return root
}

// tool returns $IMAGEGATE_TOOLS/bin/<name>, built by `make e2e-tools`; a
// missing binary fails the test (a skipped e2e test looks like a pass).
func tool(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(registrytest.ToolsDir(), "bin", name)
	fi, err := os.Stat(p)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s not built: run `make e2e-tools` (looked for %s)", name, p)
	}
	return p
}

var (
	buildOnce     sync.Once
	buildDir      string
	imagegateBin  string
	imagegateErr  error
	buildDuration time.Duration
)

// buildImagegate builds ./cmd/imagegate once per test binary run.
func buildImagegate(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		buildDir, imagegateErr = os.MkdirTemp("", "imagegate-e2e-bin-")
		if imagegateErr != nil {
			return
		}
		imagegateBin = filepath.Join(buildDir, "imagegate")
		cmd := exec.Command("go", "build", "-o", imagegateBin, "./cmd/imagegate")
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			imagegateErr = fmt.Errorf("go build ./cmd/imagegate: %v\n%s", err, out)
		}
		buildDuration = time.Since(start)
	})
	if imagegateErr != nil {
		t.Fatal(imagegateErr)
	}
	t.Logf("imagegate built from this repository in %v: %s", buildDuration.Round(time.Millisecond), imagegateBin)
	return imagegateBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// artifactsDir is where logs, rendered configs, their keys and certificates
// and the audit log go:
// $E2E_ARTIFACTS/<test name> (replaced if it exists, kept afterwards), or a
// temporary directory kept only if the test fails.
func artifactsDir(t *testing.T) string {
	t.Helper()
	var dir string
	if base := os.Getenv("E2E_ARTIFACTS"); base != "" {
		abs, err := filepath.Abs(base)
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(abs, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("artifacts (logs, configs, audit log): %s", dir)
		return dir
	}
	dir, err := os.MkdirTemp("", "imagegate-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("artifacts kept (logs, configs, audit log): %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	t.Logf("artifacts (logs, configs, audit log; kept on failure or with E2E_ARTIFACTS set): %s", dir)
	return dir
}

// env is one running control plane with imagegate behind it.
type env struct {
	root      string
	work      string // etcd and registry storage (removed at the end)
	artifacts string // logs/, config/, pki/, keys/, audit.log (see artifactsDir)
	procs     *processes

	cosign signaturetest.Cosign
	key    signaturetest.KeyPair // the "release" key of the example config

	// Corp and Public are two distribution registries (host:port), the
	// stand-ins for the example's registry.corp.example:5000 (allowed
	// everywhere, the only one allowed in prod-*) and ghcr.io (allowed
	// outside prod-*).
	Corp, Public string
	registries   map[string]registryRun // by host:port

	imagegateBin    string
	imagegateConfig string
	imagegateAddr   string // 127.0.0.1:port, kept across restarts
	imagegate       *process
	imagegateHTTP   *http.Client // presents the apiserver's client cert

	etcd, apiserver *process
	etcdURL         string
	auditLog        string
	Client          kubernetes.Interface
	RESTConfig      *rest.Config // the cluster admin's

	// Gatekeeper mode (startGatekeeperEnv): no ImagePolicyWebhook; imagegate
	// runs gatekeeper/deploy's config and Gatekeeper runs out of cluster.
	gatekeeperMode bool
	gatekeeperCA   *ca     // signs Gatekeeper's serving and client certificate
	gatekeeperCert keyPair // IP:127.0.0.1, serverAuth+clientAuth
	servingCA      *ca     // imagegate's serving CA (the Providers' caBundle)
	gk             *gatekeeper
}

// startEnv starts everything, in dependency order, and stops it all when
// the test ends (also when it fails or a step fails half way).
func startEnv(t *testing.T) *env {
	t.Helper()
	return startEnvMode(t, false)
}

// startEnvMode starts the ImagePolicyWebhook environment, or (gatekeeper
// true) the one for Gatekeeper: the same etcd, apiserver (without the
// ImagePolicyWebhook admission plugin), registries and imagegate (with
// gatekeeper/deploy's config, mTLS with Gatekeeper's CA); startGatekeeperEnv
// then adds Gatekeeper.
func startEnvMode(t *testing.T, gatekeeper bool) *env {
	t.Helper()
	start := time.Now()
	e := &env{root: repoRoot(t), work: t.TempDir(), artifacts: artifactsDir(t), gatekeeperMode: gatekeeper}
	for _, d := range []string{"logs", "config"} {
		if err := os.MkdirAll(filepath.Join(e.artifacts, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.procs = &processes{dir: filepath.Join(e.artifacts, "logs")}
	t.Cleanup(func() { e.procs.stopAll(t) })

	kubeAPIServer, etcd := tool(t, "kube-apiserver"), tool(t, "etcd")
	for _, bin := range []string{kubeAPIServer, etcd} {
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", bin, err, out)
		}
		t.Logf("%s: %s", bin, strings.Join(strings.Fields(string(out)), " "))
	}
	e.imagegateBin = buildImagegate(t)
	e.cosign = signaturetest.FindCosign(t, "v3")
	// Keys and certificates (all throwaway) live with the artifacts, so the
	// rendered configs that name them still work after the run.
	e.key = e.cosign.GenerateKeyPair(t, filepath.Join(e.artifacts, "keys"))

	e.Corp = e.startRegistry(t, "registry-corp")
	e.Public = e.startRegistry(t, "registry-public")

	pki := filepath.Join(e.artifacts, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	// imagegate's serving CA (the kubeconfig's certificate-authority) and
	// the CA of the apiserver's client certificate (imagegate's
	// tls.clientCAFile): two CAs, so a swapped file shows.
	servingCA := newCA(t, pki, "imagegate-serving-ca")
	e.servingCA = servingCA
	igServing := servingCA.issue(t, pki, "imagegate", certSpec{CommonName: "imagegate", IPs: loopback, Server: true})
	var kasClient keyPair
	if gatekeeper {
		// Gatekeeper's webhook certificate is also its external-data
		// client certificate (DESIGN.md); imagegate's clientCAFile is its CA.
		e.gatekeeperCA = newCA(t, pki, "gatekeeper-ca")
		e.gatekeeperCert = e.gatekeeperCA.issue(t, pki, "gatekeeper", certSpec{
			CommonName: "gatekeeper-webhook-service", IPs: loopback, Server: true, Client: true,
		})
		e.startImagegateGatekeeper(t, igServing, servingCA)
	} else {
		clientCA := newCA(t, pki, "apiserver-client-ca")
		kasClient = clientCA.issue(t, pki, "apiserver-client", certSpec{CommonName: "kube-apiserver", Client: true})
		e.startImagegateFirst(t, igServing, servingCA, clientCA, kasClient)
	}

	e.startEtcd(t, etcd)
	e.startAPIServer(t, kubeAPIServer, pki, servingCA, kasClient)
	t.Logf("environment up in %v", time.Since(start).Round(time.Millisecond))
	return e
}

// startRegistry runs a distribution registry (no referrers API: cosign
// bundles land in the sha256-<hex> fallback tag) and returns host:port.
func (e *env) startRegistry(t *testing.T, name string) string {
	t.Helper()
	bin := registrytest.DistributionBinary(t)
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	host := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := filepath.Join(e.artifacts, "config", name+".yml")
	writeFile(t, cfg, fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), host))
	if e.registries == nil {
		e.registries = map[string]registryRun{}
	}
	e.registries[host] = registryRun{name: name, bin: bin, cfg: cfg}
	e.runRegistry(t, host)
	return host
}

// registryRun is how to start a registry again on the same address, with
// the same storage.
type registryRun struct {
	name, bin, cfg string
	p              *process
}

func (e *env) runRegistry(t *testing.T, host string) {
	t.Helper()
	r := e.registries[host]
	// No tracing: the registry would export OpenTelemetry traces to
	// localhost:4318 and log every failure to do so.
	r.p = e.procs.start(t, r.name, r.bin, []string{"serve", r.cfg}, []string{"OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true"})
	e.registries[host] = r
	c := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, r.name, r.p, 30*time.Second, func() error { return httpOK(c, "http://"+host+"/v2/") })
}

// StopRegistry kills the registry at host (a registry outage).
func (e *env) StopRegistry(t *testing.T, host string) {
	t.Helper()
	e.registries[host].p.Kill()
	t.Logf("killed registry %s", host)
}

// StartRegistry starts the registry at host again, with its storage.
func (e *env) StartRegistry(t *testing.T, host string) {
	t.Helper()
	e.runRegistry(t, host)
}

func httpOK(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// example reads examples/imagepolicywebhook/<file> and applies subs (old,
// new pairs); every old string must occur, so an edit to the example that
// the suite no longer matches fails loudly instead of testing something
// else.
func (e *env) example(t *testing.T, file string, subs ...string) string {
	t.Helper()
	return e.render(t, filepath.Join("examples", "imagepolicywebhook", file), subs...)
}

// startImagegateFirst renders imagegate's config from
// examples/imagepolicywebhook/imagegate.yaml and starts it.
//
// The example is used as written except for:
//   - listen ":8443" → 127.0.0.1:<free port>
//   - /etc/imagegate/tls/{tls.crt,tls.key,apiserver-ca.crt} → generated files
//   - /etc/imagegate/keys/release.pub → the cosign key pair's public key
//   - registry.corp.example:5000 → the Corp registry, "ghcr.io" → the Public
//     registry (in registries.allow and in the prod-* registry rule)
//   - registries.insecure and registries.private list both registries:
//     they speak plain HTTP on loopback, which imagegate otherwise refuses.
//
// policy.params are untouched.
func (e *env) startImagegateFirst(t *testing.T, serving keyPair, servingCA, clientCA *ca, client keyPair) {
	t.Helper()
	e.imagegateAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	rendered := e.example(t, "imagegate.yaml",
		`listen: ":8443"`, fmt.Sprintf("listen: %q", e.imagegateAddr),
		"/etc/imagegate/tls/tls.crt", serving.CertFile,
		"/etc/imagegate/tls/tls.key", serving.KeyFile,
		"/etc/imagegate/tls/apiserver-ca.crt", clientCA.File,
		"/etc/imagegate/keys/release.pub", e.key.PublicKey,
		"registry.corp.example:5000", e.Corp,
		`"ghcr.io"`, strconv.Quote(e.Public),
	)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(rendered), &cfg); err != nil {
		t.Fatalf("rendered imagegate.yaml: %v", err)
	}
	regs, ok := cfg["registries"].(map[string]any)
	if !ok {
		t.Fatalf("rendered imagegate.yaml has no registries map: %v", cfg["registries"])
	}
	regs["insecure"] = []string{e.Corp, e.Public}
	regs["private"] = []string{e.Corp, e.Public}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.imagegateConfig = filepath.Join(e.artifacts, "config", "imagegate.yaml")
	writeFile(t, e.imagegateConfig, "# rendered from examples/imagepolicywebhook/imagegate.yaml by test/e2e\n"+string(out))
	e.imagegateClient(t, servingCA, client)
	e.StartImagegate(t)
}

// imagegateClient is the HTTPS client the suite probes imagegate with: it
// trusts servingCA and presents client.
func (e *env) imagegateClient(t *testing.T, servingCA *ca, client keyPair) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(servingCA.PEM)
	cert, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}}
	t.Cleanup(tr.CloseIdleConnections)
	e.imagegateHTTP = &http.Client{Transport: tr, Timeout: 2 * time.Second}
}

// StartImagegate starts (or restarts) imagegate with the rendered config
// on the same address and waits for /healthz.
func (e *env) StartImagegate(t *testing.T) {
	t.Helper()
	if e.imagegate != nil && e.imagegate.Running() {
		t.Fatalf("imagegate (pid %d) is still running", e.imagegate.PID)
	}
	p := e.procs.start(t, "imagegate", e.imagegateBin, []string{"serve", "--config", e.imagegateConfig, "--log-level", "debug"}, nil)
	e.imagegate = p
	e.imagegateHTTP.Transport.(*http.Transport).CloseIdleConnections()
	waitFor(t, "imagegate", p, 30*time.Second, func() error { return httpOK(e.imagegateHTTP, "https://"+e.imagegateAddr+"/healthz") })
}

// KillImagegate kills imagegate with SIGKILL, as a crash would.
func (e *env) KillImagegate(t *testing.T) {
	t.Helper()
	e.imagegate.Kill()
	t.Logf("killed imagegate (pid %d)", e.imagegate.PID)
}

func (e *env) startEtcd(t *testing.T, bin string) {
	t.Helper()
	client := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	peer := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	args := []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(e.work, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=e2e=" + peer,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync", // a throwaway store; fsync only slows a shared disk
		"--log-level=warn",
	}
	e.etcd = e.procs.start(t, "etcd", bin, args, nil)
	c := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, "etcd", e.etcd, 30*time.Second, func() error {
		resp, err := c.Get(client + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var h struct {
			Health string `json:"health"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			return err
		}
		if h.Health != "true" {
			return fmt.Errorf("health %q", h.Health)
		}
		return nil
	})
	e.etcdURL = client
}

// auditPolicy logs pod creates at Metadata level: enough for the
// annotations admission plugins add (imagepolicywebhook.image-policy.k8s.io/…).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["create"]
    resources:
      - group: ""
        resources: ["pods"]
  - level: None
`

// startAPIServer runs kube-apiserver on loopback: with the ImagePolicyWebhook
// admission plugin configured by examples/imagepolicywebhook (see
// imagePolicyWebhookConfig), or, in Gatekeeper mode, with only the default
// admission plugins (Gatekeeper registers its webhooks later).
func (e *env) startAPIServer(t *testing.T, bin, pki string, servingCA *ca, kasClient keyPair) {
	t.Helper()
	cfgDir := filepath.Join(e.artifacts, "config")
	var admissionArgs []string
	if !e.gatekeeperMode {
		admissionArgs = e.imagePolicyWebhookConfig(t, cfgDir, servingCA, kasClient)
	}
	policy := filepath.Join(cfgDir, "audit-policy.yaml")
	writeFile(t, policy, auditPolicy)
	e.auditLog = filepath.Join(e.artifacts, "audit.log")

	clusterCA := newCA(t, pki, "cluster-ca")
	serving := clusterCA.issue(t, pki, "kube-apiserver", certSpec{
		CommonName: "kube-apiserver",
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		Server:     true,
	})
	admin := clusterCA.issue(t, pki, "admin", certSpec{CommonName: "e2e-admin", Organization: []string{"system:masters"}, Client: true})
	saKey, saPub := serviceAccountKeys(t, pki)
	port := freePort(t)
	args := []string{
		"--etcd-servers=" + e.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(e.work, "apiserver-certs"),
		"--tls-cert-file=" + serving.CertFile,
		"--tls-private-key-file=" + serving.KeyFile,
		"--client-ca-file=" + clusterCA.File,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
		"--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount",
	}
	args = append(args, admissionArgs...)
	args = append(args,
		"--audit-policy-file="+policy,
		"--audit-log-path="+e.auditLog,
		"--audit-log-format=json",
		"--profiling=false",
		"--v=2", // logs the webhook's errors (contacting the backend)
	)
	e.apiserver = e.procs.start(t, "kube-apiserver", bin, args, nil)

	cfg := &rest.Config{
		Host: "https://127.0.0.1:" + strconv.Itoa(port),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   clusterCA.PEM,
			CertData: admin.CertPEM,
			KeyData:  admin.KeyPEM,
		},
		QPS:     50,
		Burst:   100,
		Timeout: 60 * time.Second,
	}
	writeFile(t, filepath.Join(cfgDir, "admin.kubeconfig"), adminKubeconfig(cfg))
	e.RESTConfig = cfg
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Client = cs
	waitFor(t, "kube-apiserver /readyz", e.apiserver, 2*time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(body))
		}
		return nil
	})
}

// imagePolicyWebhookConfig renders the webhook kubeconfig and the admission
// config from examples/imagepolicywebhook and returns the apiserver flags
// that enable the ImagePolicyWebhook plugin with them.
func (e *env) imagePolicyWebhookConfig(t *testing.T, cfgDir string, servingCA *ca, kasClient keyPair) []string {
	t.Helper()
	kubeconfig := filepath.Join(cfgDir, "kubeconfig.yaml")
	writeFile(t, kubeconfig, e.example(t, "kubeconfig.yaml",
		"https://imagegate.imagegate-system.svc:8443/v1/imagereview", "https://"+e.imagegateAddr+"/v1/imagereview",
		"/etc/kubernetes/imagegate/ca.crt", servingCA.File,
		"/etc/kubernetes/imagegate/apiserver-client.crt", kasClient.CertFile,
		"/etc/kubernetes/imagegate/apiserver-client.key", kasClient.KeyFile,
	))
	admission := filepath.Join(cfgDir, "admission-config.yaml")
	writeFile(t, admission, e.example(t, "admission-config.yaml",
		"/etc/kubernetes/imagegate/kubeconfig.yaml", kubeconfig,
	))
	return []string{
		"--enable-admission-plugins=ImagePolicyWebhook",
		"--admission-control-config-file=" + admission,
	}
}

// adminKubeconfig is a kubeconfig for the cluster admin, kept with the
// artifacts: `kubectl --kubeconfig <artifacts>/config/admin.kubeconfig`
// while a test is paused (the keys are throwaway).
func adminKubeconfig(cfg *rest.Config) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster:
      server: %s
      certificate-authority-data: %s
users:
  - name: admin
    user:
      client-certificate-data: %s
      client-key-data: %s
contexts:
  - name: e2e
    context: {cluster: e2e, user: admin}
current-context: e2e
`, cfg.Host, b64(cfg.CAData), b64(cfg.CertData), b64(cfg.KeyData))
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// randomSuffix is 6 hex characters.
func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// PushImage pushes a random one-layer image whose config says it was
// created at created, as host/repo:tag, and returns the pinned reference
// host/repo:tag@sha256:….
func (e *env) PushImage(t *testing.T, host, repo, tag string, created time.Time) string {
	t.Helper()
	img := registrytest.Build(t, registrytest.Image{Created: created})
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return host + "/" + repo + ":" + tag + "@" + d.String()
}

// Sign signs a pinned image with the release key using real cosign v3
// (Sigstore bundle, offline: no Rekor).
func (e *env) Sign(t *testing.T, pinned string) {
	t.Helper()
	ref, err := name.ParseReference(pinned, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	dig, ok := ref.(name.Digest)
	if !ok {
		t.Fatalf("Sign(%q): not pinned to a digest", pinned)
	}
	e.cosign.Sign(t, e.key, dig.Context().String()+"@"+dig.DigestStr(), signaturetest.Bundle)
}
