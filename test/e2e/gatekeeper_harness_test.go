//go:build e2e

package e2e

import (
	"bytes"

	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// gatekeeperVersion is the Gatekeeper release whose CRDs are installed; the
// Makefile passes its GATEKEEPER_VERSION pin (the manager binary in
// $IMAGEGATE_TOOLS/bin/gatekeeper is built from the same version).
func gatekeeperVersion() string {
	if v := os.Getenv("GATEKEEPER_VERSION"); v != "" {
		return v
	}
	return "v3.23.1"
}

// gatekeeperNamespace is where Gatekeeper keeps its status objects and Config.
const gatekeeperNamespace = "gatekeeper-system"

// gatekeeperPod is the manager's POD_NAME, a Pod stored in gatekeeperNamespace.
const gatekeeperPod = "gatekeeper-e2e"

// gatekeeper is the out-of-cluster Gatekeeper manager.
type gatekeeper struct {
	proc       *process
	addr       string // webhook 127.0.0.1:port
	healthAddr string
	certDir    string
}

// startGatekeeperEnv starts etcd, kube-apiserver (no ImagePolicyWebhook),
// the registries, imagegate with gatekeeper/deploy/components/mtls's config
// and the Gatekeeper manager out of cluster, with its webhooks registered.
func startGatekeeperEnv(t *testing.T) *env {
	t.Helper()
	e := startEnvMode(t, true)
	start := time.Now()
	e.startGatekeeper(t)
	t.Logf("gatekeeper up in %v", time.Since(start).Round(time.Millisecond))
	return e
}

// render reads <repo>/<rel> and applies subs (old, new pairs); every old
// string must occur (see example).
func (e *env) render(t *testing.T, rel string, subs ...string) string {
	t.Helper()
	path := filepath.Join(e.root, rel)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(subs); i += 2 {
		if !strings.Contains(s, subs[i]) {
			t.Fatalf("%s no longer contains %q: update the e2e substitutions (test/e2e)", path, subs[i])
		}
		s = strings.ReplaceAll(s, subs[i], subs[i+1])
	}
	return s
}

// startImagegateGatekeeper renders imagegate's config from
// gatekeeper/deploy/components/mtls/imagegate.yaml (the in-cluster config
// with Gatekeeper's CA as clientCAFile) and starts it. Changed:
//   - listen, the TLS files and the client CA → generated files
//   - registries.allow → the two loopback registries (also insecure and
//     private: plain HTTP)
//   - trust → the cosign key "release" (the Sigstore public-good TUF root
//     needs the internet)
//   - cache.tagTTL → 2s (the config sets no cache section).
func (e *env) startImagegateGatekeeper(t *testing.T, serving keyPair, servingCA *ca) {
	t.Helper()
	e.imagegateAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	rel := filepath.Join("gatekeeper", "deploy", "components", "mtls", "imagegate.yaml")
	rendered := e.render(t, rel,
		`listen: ":8443"`, fmt.Sprintf("listen: %q", e.imagegateAddr),
		"/etc/imagegate/tls/tls.crt", serving.CertFile,
		"/etc/imagegate/tls/tls.key", serving.KeyFile,
		"/etc/imagegate/gatekeeper-ca/ca.crt", e.gatekeeperCA.File,
	)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(rendered), &cfg); err != nil {
		t.Fatalf("rendered %s: %v", rel, err)
	}
	regs, ok := cfg["registries"].(map[string]any)
	if !ok {
		t.Fatalf("rendered %s has no registries map: %v", rel, cfg["registries"])
	}
	regs["allow"] = []string{e.Corp, e.Public}
	regs["insecure"] = []string{e.Corp, e.Public}
	regs["private"] = []string{e.Corp, e.Public}
	cfg["trust"] = map[string]any{"keys": map[string]string{"release": e.key.PublicKey}}
	// imagegate keeps tag → digest for 30 s by default: the audit scenario
	// re-pushes a tag and should not wait that long for it to show.
	cfg["cache"] = map[string]any{"tagTTL": "2s"}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.imagegateConfig = filepath.Join(e.artifacts, "config", "imagegate.yaml")
	writeFile(t, e.imagegateConfig, "# rendered from "+rel+" by test/e2e\n"+string(out))
	e.imagegateClient(t, servingCA, e.gatekeeperCert)
	e.StartImagegate(t)
}

// Dynamic is a dynamic client for the cluster admin.
func (e *env) Dynamic(t *testing.T) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(e.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// decodeYAML splits a multi-document manifest into objects.
func decodeYAML(t *testing.T, what, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split("\n"+manifest, "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// resourceFor maps an object's kind to its resource with fresh discovery
// (constraint kinds appear when their template is created), retrying while
// the kind is not served yet.
func (e *env) resourceFor(t *testing.T, u *unstructured.Unstructured) (schema.GroupVersionResource, bool) {
	t.Helper()
	gvk := u.GroupVersionKind()
	cs, err := kubernetes.NewForConfig(e.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		groups, err := restmapper.GetAPIGroupResources(cs.Discovery())
		if err == nil {
			m, merr := restmapper.NewDiscoveryRESTMapper(groups).RESTMapping(gvk.GroupKind(), gvk.Version)
			if merr == nil {
				return m.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace
			}
			err = merr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no resource for %v: %v", gvk, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Apply creates every object of manifest, or replaces it if it exists.
func (e *env) Apply(t *testing.T, what, manifest string) []*unstructured.Unstructured {
	t.Helper()
	objs := decodeYAML(t, what, manifest)
	for _, u := range objs {
		e.ApplyObject(t, u)
	}
	return objs
}

// ApplyObject creates u, or replaces it if it exists.
func (e *env) ApplyObject(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	gvr, namespaced := e.resourceFor(t, u)
	var ri dynamic.ResourceInterface = e.Dynamic(t).Resource(gvr)
	if namespaced {
		ns := u.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		ri = e.Dynamic(t).Resource(gvr).Namespace(ns)
	}
	_, err := ri.Create(ctx(t), u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *unstructured.Unstructured
		cur, err = ri.Get(ctx(t), u.GetName(), metav1.GetOptions{})
		if err == nil {
			u.SetResourceVersion(cur.GetResourceVersion())
			_, err = ri.Update(ctx(t), u, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	t.Logf("applied %s %s", u.GetKind(), u.GetName())
}

// Get reads an object back by the kind, namespace and name of u.
func (e *env) Get(t *testing.T, u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	t.Helper()
	gvr, namespaced := e.resourceFor(t, u)
	if namespaced {
		return e.Dynamic(t).Resource(gvr).Namespace(u.GetNamespace()).Get(ctx(t), u.GetName(), metav1.GetOptions{})
	}
	return e.Dynamic(t).Resource(gvr).Get(ctx(t), u.GetName(), metav1.GetOptions{})
}

// WaitObject polls u until ok returns nil.
func (e *env) WaitObject(t *testing.T, u *unstructured.Unstructured, timeout time.Duration, ok func(*unstructured.Unstructured) error) *unstructured.Unstructured {
	t.Helper()
	start := time.Now()
	var err error
	for {
		var cur *unstructured.Unstructured
		cur, err = e.Get(t, u)
		if err == nil {
			if err = ok(cur); err == nil {
				t.Logf("%s %s ready after %v", u.GetKind(), u.GetName(), time.Since(start).Round(10*time.Millisecond))
				return cur
			}
		}
		if time.Since(start) > timeout {
			tail := ""
			if e.gk != nil {
				tail = "\ngatekeeper log tail:\n" + e.gk.proc.Tail(30)
			}
			t.Fatalf("%s %s not ready after %v: %v%s", u.GetKind(), u.GetName(), timeout, err, tail)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// byPod returns status.byPod of a Gatekeeper object.
func byPod(u *unstructured.Unstructured) []map[string]any {
	list, _, _ := unstructured.NestedSlice(u.Object, "status", "byPod")
	var out []map[string]any
	for _, p := range list {
		if m, ok := p.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// statusFlag waits for status.byPod[*].<field> == true (enforced for
// constraints and Assigns, active for Providers) with no errors reported.
func statusFlag(field string) func(*unstructured.Unstructured) error {
	return func(u *unstructured.Unstructured) error {
		pods := byPod(u)
		if len(pods) == 0 {
			return fmt.Errorf("no status.byPod yet")
		}
		for _, p := range pods {
			if errs, ok := p["errors"]; ok && errs != nil {
				return fmt.Errorf("status errors: %v", errs)
			}
			if v, _ := p[field].(bool); !v {
				return fmt.Errorf("byPod %v: %s not true", p["id"], field)
			}
			if g, ok := p["observedGeneration"]; ok && fmt.Sprint(g) != strconv.FormatInt(u.GetGeneration(), 10) {
				return fmt.Errorf("byPod %v: observedGeneration %v, generation %d", p["id"], g, u.GetGeneration())
			}
		}
		return nil
	}
}

// templateCreated waits for a ConstraintTemplate's status.created.
func templateCreated(u *unstructured.Unstructured) error {
	created, _, _ := unstructured.NestedBool(u.Object, "status", "created")
	if !created {
		return fmt.Errorf("status.created not true (byPod %v)", byPod(u))
	}
	for _, p := range byPod(u) {
		if errs, ok := p["errors"]; ok && errs != nil {
			return fmt.Errorf("status errors: %v", errs)
		}
	}
	return nil
}

var gatekeeperModDirOnce = sync.OnceValues(func() (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/open-policy-agent/gatekeeper/v3@"+gatekeeperVersion())
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download gatekeeper: %v\n%s", err, out)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", err
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download gatekeeper: %s", m.Error)
	}
	return m.Dir, nil
})

// startGatekeeper installs Gatekeeper's CRDs (from the module's
// charts/gatekeeper/crds), writes its cert dir, starts the manager out of
// cluster and, once it is ready, registers its webhooks by URL.
func (e *env) startGatekeeper(t *testing.T) {
	t.Helper()
	bin := tool(t, "gatekeeper")
	// The binary must be the release whose CRDs are installed.
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m %s: %v\n%s", bin, err, out)
	}
	want := "\tmod\tgithub.com/open-policy-agent/gatekeeper/v3\t" + gatekeeperVersion() + "\t"
	if !strings.Contains(string(out), want) {
		t.Fatalf("%s is not Gatekeeper %s (delete it and run `make e2e-tools`):\n%s", bin, gatekeeperVersion(), out)
	}
	t.Logf("%s: Gatekeeper %s", bin, gatekeeperVersion())
	modDir, err := gatekeeperModDirOnce()
	if err != nil {
		t.Fatal(err)
	}
	crdDir := filepath.Join(modDir, "charts", "gatekeeper", "crds")
	files, err := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Gatekeeper CRDs in %s: %v", crdDir, err)
	}
	var crds []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crds = append(crds, e.Apply(t, f, string(b))...)
	}
	for _, crd := range crds {
		e.WaitObject(t, crd, time.Minute, func(u *unstructured.Unstructured) error {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
			return fmt.Errorf("not Established")
		})
	}
	if _, err = e.Client.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: gatekeeperNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", gatekeeperNamespace, err)
	}
	// Gatekeeper's status objects are owned by its Pod (looked up by
	// POD_NAME): a stored stand-in, never run (there is no kubelet).
	// (--debug-use-fake-pod was not used: its fake Pod has no UID to own them.)
	_, err = e.Client.CoreV1().Pods(gatekeeperNamespace).Create(ctx(t), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: gatekeeperPod, Namespace: gatekeeperNamespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "manager", Image: "openpolicyagent/gatekeeper:" + gatekeeperVersion()}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create stand-in pod %s/%s: %v", gatekeeperNamespace, gatekeeperPod, err)
	}

	gk := &gatekeeper{certDir: filepath.Join(e.artifacts, "pki", "gatekeeper-certs")}
	if err := os.MkdirAll(gk.certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(gk.certDir, "tls.crt"), string(e.gatekeeperCert.CertPEM))
	writeFile(t, filepath.Join(gk.certDir, "tls.key"), string(e.gatekeeperCert.KeyPEM))
	writeFile(t, filepath.Join(gk.certDir, "ca.crt"), string(e.gatekeeperCA.PEM))
	auditDir := filepath.Join(e.work, "gatekeeper-audit")
	if err := os.MkdirAll(auditDir, 0o700); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	gk.addr = "127.0.0.1:" + strconv.Itoa(port)
	gk.healthAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := []string{
		"--kubeconfig=" + filepath.Join(e.artifacts, "config", "admin.kubeconfig"),
		"--host=127.0.0.1",
		"--port=" + strconv.Itoa(port),
		"--cert-dir=" + gk.certDir,
		"--disable-cert-rotation",
		"--health-addr=" + gk.healthAddr,
		"--metrics-addr=0",
		"--operation=webhook",
		"--operation=audit",
		"--operation=status",
		"--operation=mutation-webhook",
		"--operation=mutation-status",
		"--operation=mutation-controller",
		"--operation=generate", // creates the constraint CRDs of templates
		"--enable-external-data=true",
		// Short, so the audit scenario sees a moved tag within a cycle.
		"--external-data-provider-response-cache-ttl=5s",
		"--audit-interval=5",
		"--api-cache-dir=" + auditDir, // default /tmp/audit, which must exist
		"--log-denies",
		"--log-mutations",
		"--shutdown-delay=0",
		"--log-level=INFO",
	}
	gk.proc = e.procs.start(t, "gatekeeper", bin, args, []string{
		"POD_NAME=" + gatekeeperPod,
		"KUBECONFIG=" + filepath.Join(e.artifacts, "config", "admin.kubeconfig"),
		"POD_NAMESPACE=" + gatekeeperNamespace,
	})
	e.gk = gk
	hc := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, "gatekeeper /readyz", gk.proc, 3*time.Minute, func() error { return httpOK(hc, "http://"+gk.healthAddr+"/readyz") })
	e.registerGatekeeperWebhooks(t)
}

// registerGatekeeperWebhooks creates the validating and mutating webhook
// configurations (by URL, Gatekeeper's CA as caBundle) for Pods and
// Deployments, failing closed, outside kube-system and gatekeeper-system.
func (e *env) registerGatekeeperWebhooks(t *testing.T) {
	t.Helper()
	fail := admissionv1.Fail
	none := admissionv1.SideEffectClassNone
	exact := admissionv1.Equivalent
	never := admissionv1.NeverReinvocationPolicy
	timeout := int32(10)
	nsSel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn,
		Values: []string{"kube-system", gatekeeperNamespace},
	}}}
	rules := []admissionv1.RuleWithOperations{{
		Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
		Rule:       admissionv1.Rule{APIGroups: []string{"", "apps"}, APIVersions: []string{"v1"}, Resources: []string{"pods", "deployments"}},
	}}
	url := func(path string) *string { s := "https://" + e.gk.addr + path; return &s }
	_, err := e.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx(t), &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "gatekeeper-validating-webhook-configuration"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:                    "validation.gatekeeper.sh",
			ClientConfig:            admissionv1.WebhookClientConfig{URL: url("/v1/admit"), CABundle: e.gatekeeperCA.PEM},
			Rules:                   rules,
			FailurePolicy:           &fail,
			MatchPolicy:             &exact,
			NamespaceSelector:       nsSel,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1", "v1beta1"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ValidatingWebhookConfiguration: %v", err)
	}
	_, err = e.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx(t), &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "gatekeeper-mutating-webhook-configuration"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:                    "mutation.gatekeeper.sh",
			ClientConfig:            admissionv1.WebhookClientConfig{URL: url("/v1/mutate"), CABundle: e.gatekeeperCA.PEM},
			Rules:                   rules,
			FailurePolicy:           &fail,
			MatchPolicy:             &exact,
			NamespaceSelector:       nsSel,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			ReinvocationPolicy:      &never,
			AdmissionReviewVersions: []string{"v1", "v1beta1"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create MutatingWebhookConfiguration: %v", err)
	}
	t.Logf("gatekeeper webhooks registered: https://%s/v1/admit, /v1/mutate", e.gk.addr)
}

// Providers applies gatekeeper/providers with url → this imagegate and
// caBundle → its serving CA, and waits until Gatekeeper has them active.
func (e *env) Providers(t *testing.T) {
	t.Helper()
	caBundle := b64(e.servingCA.PEM)
	for _, name := range []string{"imagegate-facts", "imagegate-digest"} {
		path := strings.TrimPrefix(name, "imagegate-")
		objs := e.Apply(t, name, e.render(t, filepath.Join("gatekeeper", "providers", name+".yaml"),
			"https://imagegate.imagegate-system.svc:8443/v1/externaldata/"+path, "https://"+e.imagegateAddr+"/v1/externaldata/"+path,
			"CA_BUNDLE_FROM_KUSTOMIZE", caBundle,
		))
		for _, o := range objs {
			e.WaitObject(t, o, time.Minute, statusFlag("active"))
		}
	}
}

// Template applies gatekeeper/library/<rule>/template.yaml as generated and
// waits until Gatekeeper has created it.
func (e *env) Template(t *testing.T, rule string) {
	t.Helper()
	for _, o := range e.Apply(t, rule+" template", e.render(t, filepath.Join("gatekeeper", "library", rule, "template.yaml"))) {
		e.WaitObject(t, o, 2*time.Minute, templateCreated)
	}
}

// Constraint applies a constraint and waits until it is enforced.
func (e *env) Constraint(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	objs := e.Apply(t, "constraint", manifest)
	var last *unstructured.Unstructured
	for _, o := range objs {
		last = e.WaitObject(t, o, 2*time.Minute, statusFlag("enforced"))
	}
	return last
}

// warnings collects the Warning headers client-go receives.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) All() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.list...)
}

// WarningClient is a clientset that records admission warnings in w.
func (e *env) WarningClient(t *testing.T) (kubernetes.Interface, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(e.RESTConfig)
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, w
}

// expectSomeContains fails unless some string of got contains every want.
func expectSomeContains(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	for _, g := range got {
		all := true
		for _, w := range want {
			all = all && strings.Contains(g, w)
		}
		if all {
			return
		}
	}
	t.Errorf("no %s contains all of %q; got %q", what, want, got)
}

// shortJSON is for logging objects.
func shortJSON(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 2000 {
		b = append(b[:2000], "…"...)
	}
	return string(bytes.TrimSpace(b))
}
