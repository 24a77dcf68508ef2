package gatekeeper_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/unversioned"
	templatesv1 "github.com/open-policy-agent/frameworks/constraint/pkg/apis/templates/v1"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/drivers/rego/schema"
	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/imagegate/imagegate/server/certs"
	"github.com/imagegate/imagegate/server/config"
)

// gatekeeperCRDs are Gatekeeper v3.23.1's own CRDs (charts/gatekeeper/crds),
// copied into testdata: the manifests are validated against the schemas a
// cluster running that Gatekeeper enforces.
const gatekeeperCRDs = "testdata/gatekeeper-v3.23.1-crds"

// crdSet maps "group/Kind" to a CRD.
type crdSet map[string]*apiextensionsv1.CustomResourceDefinition

func loadCRDs(t *testing.T) crdSet {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(gatekeeperCRDs, "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no CRDs in %s (%v)", gatekeeperCRDs, err)
	}
	out := crdSet{}
	for _, p := range paths {
		for _, doc := range splitYAML(readFile(t, p)) {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.Unmarshal(doc, &crd); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out[crd.Spec.Group+"/"+crd.Spec.Names.Kind] = &crd
		}
	}
	return out
}

// validate checks obj against its CRD version's schema as the API server
// does, and refuses fields the schema does not know (they would be pruned).
func (s crdSet) validate(obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	crd, ok := s[gvk.Group+"/"+gvk.Kind]
	if !ok {
		return fmt.Errorf("no CRD for %s", gvk.GroupKind())
	}
	var v1schema *apiextensionsv1.JSONSchemaProps
	for _, v := range crd.Spec.Versions {
		if v.Name == gvk.Version && v.Served {
			v1schema = v.Schema.OpenAPIV3Schema
		}
	}
	if v1schema == nil {
		return fmt.Errorf("%s: version %s is not served by Gatekeeper's CRD", gvk.GroupKind(), gvk.Version)
	}
	var internal apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1schema, &internal, nil); err != nil {
		return err
	}
	validator, _, err := validation.NewSchemaValidator(&internal)
	if err != nil {
		return err
	}
	if errs := validation.ValidateCustomResource(field.NewPath(""), obj.Object, validator); len(errs) > 0 {
		return errs.ToAggregate()
	}
	structural, err := structuralschema.NewStructural(&internal)
	if err != nil {
		return err
	}
	unknown := pruning.PruneWithOptions(obj.DeepCopy().Object, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	if len(unknown) > 0 {
		return fmt.Errorf("fields unknown to Gatekeeper's schema: %v", unknown)
	}
	return nil
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	return parseObjects(t, path, readFile(t, path))
}

func parseObjects(t *testing.T, what string, b []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, doc := range splitYAML(b) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		out = append(out, u)
	}
	return out
}

// TestGatekeeperManifests validates the Providers, Assigns, Config and
// ConstraintTemplates against Gatekeeper v3.23.1's CRD schemas, and checks
// what the schemas cannot.
func TestGatekeeperManifests(t *testing.T) {
	crds := loadCRDs(t)
	var files []string
	for _, pattern := range []string{"providers/*.yaml", "mutation/assign-*.yaml", "config/config.yaml", "library/*/template.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil || len(m) == 0 {
			t.Fatalf("no %s (%v)", pattern, err)
		}
		files = append(files, m...)
	}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		for _, obj := range readObjects(t, f) {
			if err := crds.validate(obj); err != nil {
				t.Errorf("%s: %s %s: %v", f, obj.GetKind(), obj.GetName(), err)
			}
		}
	}

	t.Run("providers", func(t *testing.T) {
		for _, name := range []string{"imagegate-facts", "imagegate-digest"} {
			p := readProvider(t, name)
			endpoint := strings.TrimPrefix(name, "imagegate-")
			if want := "https://imagegate.imagegate-system.svc:8443/v1/externaldata/" + endpoint; p.Spec.URL != want {
				t.Errorf("%s: url %q, want %q", name, p.Spec.URL, want)
			}
			// Gatekeeper fails every call at once with timeout 0; imagegate's
			// budget (2.5s) must fit inside.
			if p.Spec.Timeout < 3 {
				t.Errorf("%s: timeout %d, want at least 3 (above imagegate's 2.5s budget)", name, p.Spec.Timeout)
			}
			if p.Spec.CABundle != "CA_BUNDLE_FROM_KUSTOMIZE" {
				t.Errorf("%s: caBundle %q, want the placeholder kustomization.yaml replaces", name, p.Spec.CABundle)
			}
		}
	})

	t.Run("assigns", func(t *testing.T) {
		locations := map[string]bool{}
		for _, a := range readAssigns(t) {
			ed := a.Spec.Parameters.Assign.ExternalData
			if a.APIVersion != "mutations.gatekeeper.sh/v1" || ed == nil || ed.Provider != "imagegate-digest" || ed.DataSource != "ValueAtLocation" || ed.FailurePolicy != "Fail" {
				t.Errorf("%s: %s externalData %+v, want mutations.gatekeeper.sh/v1 with imagegate-digest, ValueAtLocation, Fail", a.Metadata.Name, a.APIVersion, ed)
			}
			if !slices.Contains(a.Spec.Match.ExcludedNamespaces, "imagegate-system") {
				t.Errorf("%s: imagegate-system is not excluded", a.Metadata.Name)
			}
			for _, sel := range [][]string{selectorKeys(a.Spec.Match.LabelSelector), selectorKeys(a.Spec.Match.NamespaceSelector)} {
				if !slices.Contains(sel, "imagegate.dev/mutate NotIn [false]") {
					t.Errorf("%s: no opt-out selector imagegate.dev/mutate NotIn [false] (got %v)", a.Metadata.Name, sel)
				}
			}
			locations[a.Spec.Location] = true
		}
		for _, want := range []string{
			"spec.containers[name:*].image", "spec.initContainers[name:*].image", "spec.ephemeralContainers[name:*].image",
			"spec.template.spec.containers[name:*].image", "spec.template.spec.initContainers[name:*].image",
			"spec.jobTemplate.spec.template.spec.containers[name:*].image", "spec.jobTemplate.spec.template.spec.initContainers[name:*].image",
		} {
			if !locations[want] {
				t.Errorf("no Assign for %s", want)
			}
		}
	})

	t.Run("config", func(t *testing.T) {
		obj := readObjects(t, "config/config.yaml")[0]
		if obj.GetName() != "config" || obj.GetNamespace() != "gatekeeper-system" {
			t.Errorf("Config %s/%s, want gatekeeper-system/config (Gatekeeper ignores any other)", obj.GetNamespace(), obj.GetName())
		}
		match, _, _ := unstructured.NestedSlice(obj.Object, "spec", "match")
		exempt := false
		for _, m := range match {
			m, _ := m.(map[string]any)
			ns, _, _ := unstructured.NestedStringSlice(m, "excludedNamespaces")
			procs, _, _ := unstructured.NestedStringSlice(m, "processes")
			if slices.Contains(ns, "imagegate-system") && slices.Contains(procs, "*") {
				exempt = true
			}
		}
		if !exempt {
			t.Error("Config does not exempt imagegate-system from every process")
		}
	})

	t.Run("templates", func(t *testing.T) {
		for _, rule := range rules {
			checkTemplate(t, rule)
		}
	})
}

func selectorKeys(sel *metav1.LabelSelector) []string {
	if sel == nil {
		return nil
	}
	var out []string
	for _, e := range sel.MatchExpressions {
		out = append(out, fmt.Sprintf("%s %s %v", e.Key, e.Operator, e.Values))
	}
	return out
}

// checkTemplate checks what Gatekeeper's schema leaves open: the name
// triplet, the annotations, Rego v1, the libs and the external-data calls.
func checkTemplate(t *testing.T, rule string) {
	t.Helper()
	path := filepath.Join("library", rule, "template.yaml")
	var ct templatesv1.ConstraintTemplate
	if err := yaml.UnmarshalStrict(readFile(t, path), &ct); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	pkg := "k8simagegate" + rule
	if ct.Name != pkg || strings.ToLower(ct.Spec.CRD.Spec.Names.Kind) != pkg || !strings.HasPrefix(ct.Spec.CRD.Spec.Names.Kind, "K8sImagegate") {
		t.Errorf("%s: name %q, kind %q; want %s / K8sImagegate…", path, ct.Name, ct.Spec.CRD.Spec.Names.Kind, pkg)
	}
	a := ct.Annotations
	if a["metadata.gatekeeper.sh/title"] == "" || a["description"] == "" || !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(a["metadata.gatekeeper.sh/version"]) {
		t.Errorf("%s: annotations %v, want metadata.gatekeeper.sh/title, a semver metadata.gatekeeper.sh/version and description", path, a)
	}
	if len(ct.Spec.Targets) != 1 || len(ct.Spec.Targets[0].Code) != 1 || ct.Spec.Targets[0].Rego != "" {
		t.Fatalf("%s: want one target with one code entry and no legacy rego field", path)
	}
	code := ct.Spec.Targets[0].Code[0]
	if code.Engine != schema.Name {
		t.Fatalf("%s: engine %q", path, code.Engine)
	}
	src, ok := code.Source.Value.(map[string]any)
	if !ok {
		t.Fatalf("%s: source is %T", path, code.Source.Value)
	}
	if src["version"] != "v1" {
		t.Errorf("%s: source.version %v, want \"v1\" (Gatekeeper >= 3.19)", path, src["version"])
	}
	if src["rego"] != string(readFile(t, filepath.Join("library", rule, "src.rego"))) {
		t.Errorf("%s: source.rego is not src.rego; run make generate", path)
	}
	all, _ := src["rego"].(string)
	libs, _ := src["libs"].([]any)
	var pkgs []string
	for _, l := range libs {
		s, _ := l.(string)
		all += "\n" + s
		if m := regexp.MustCompile(`(?m)^package (\S+)`).FindStringSubmatch(s); m != nil {
			pkgs = append(pkgs, m[1])
		}
		if strings.Contains(s, "data.imagegate.") || regexp.MustCompile(`(?m)^package imagegate\.`).MatchString(s) {
			t.Errorf("%s: a lib still refers to data.imagegate.*", path)
		}
	}
	if !slices.Contains(pkgs, "lib.imagegate."+rule) {
		t.Errorf("%s: libs %v lack lib.imagegate.%s", path, pkgs, rule)
	}
	calls := strings.Count(all, "external_data(")
	switch rule {
	case "naming", "pinning", "registry":
		if calls != 0 || slices.Contains(pkgs, "lib.imagegate.gatekeeper.externaldata") {
			t.Errorf("%s: makes an external-data call (libs %v); %s needs none", path, pkgs, rule)
		}
		if !slices.Contains(pkgs, "lib.imagegate.reference") {
			t.Errorf("%s: libs %v lack lib.imagegate.reference", path, pkgs)
		}
	default:
		if calls != 1 {
			t.Errorf("%s: %d external_data calls, want exactly one per review", path, calls)
		}
		if (rule == "signature" || rule == "attestation") && !slices.Contains(pkgs, "lib.imagegate.signer") {
			t.Errorf("%s: libs %v lack lib.imagegate.signer", path, pkgs)
		}
		if rule == "freshness" && !slices.Contains(pkgs, "lib.imagegate.reference") {
			t.Errorf("%s: libs %v lack lib.imagegate.reference", path, pkgs)
		}
	}
	if ops := ct.Spec.Targets[0].Operations; fmt.Sprint(ops) != "[CREATE UPDATE]" {
		t.Errorf("%s: operations %v, want [CREATE UPDATE]", path, ops)
	}

	// gatekeeper-library layout: every sample is run by suite.yaml.
	dir := filepath.Join("library", rule)
	s, err := readSuite(readFile(t, filepath.Join(dir, "suite.yaml")))
	if err != nil {
		t.Fatalf("%s/suite.yaml: %v", dir, err)
	}
	used := map[string]bool{}
	for _, test := range s.Tests {
		used[filepath.Dir(test.Constraint)] = true
	}
	samples, _ := filepath.Glob(filepath.Join(dir, "samples", "*"))
	if len(samples) == 0 {
		t.Errorf("%s: no samples", dir)
	}
	for _, sd := range samples {
		for _, f := range []string{"constraint.yaml", "example_allowed.yaml", "example_disallowed.yaml"} {
			if _, err := os.Stat(filepath.Join(sd, f)); err != nil {
				t.Errorf("%s: %v", sd, err)
			}
		}
		if rel, _ := filepath.Rel(dir, sd); !used[rel] {
			t.Errorf("%s is not in suite.yaml", sd)
		}
	}
	for _, f := range []string{"kustomization.yaml", "constraint.tmpl", "src.rego"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
}

// TestDeployManifests checks imagegate's own deployment: the config parses
// as imagegate reads it, the workload is hardened and highly available.
func TestDeployManifests(t *testing.T) {
	base := readFile(t, "deploy/base/imagegate.yaml")
	cfg, err := config.Parse(base)
	if err != nil {
		t.Fatalf("deploy/base/imagegate.yaml: config.Parse: %v", err)
	}
	if cfg.TLS.CertFile != "/etc/imagegate/tls/tls.crt" || cfg.TLS.ClientCAFile != "" || !cfg.Digest.KeepTag || cfg.Listen != ":8443" || cfg.Budget.D().Seconds() >= 3 {
		t.Errorf("deploy config: tls %+v, keepTag %v, listen %q, budget %s", cfg.TLS, cfg.Digest.KeepTag, cfg.Listen, cfg.Budget.D())
	}
	mtls, err := config.Parse(readFile(t, "deploy/components/mtls/imagegate.yaml"))
	if err != nil {
		t.Fatalf("deploy/components/mtls/imagegate.yaml: config.Parse: %v", err)
	}
	if mtls.TLS.ClientCAFile != "/etc/imagegate/gatekeeper-ca/ca.crt" {
		t.Errorf("mtls config: clientCAFile %q", mtls.TLS.ClientCAFile)
	}
	mtls.TLS.ClientCAFile = ""
	a, _ := yaml.Marshal(cfg)
	b, _ := yaml.Marshal(mtls)
	if !bytes.Equal(a, b) {
		t.Errorf("components/mtls/imagegate.yaml differs from base/imagegate.yaml in more than tls.clientCAFile")
	}

	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/base/deployment.yaml"), &d); err != nil {
		t.Fatal(err)
	}
	checkDeployment(t, &d, "HTTPS")

	var pdb policyv1.PodDisruptionBudget
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/base/poddisruptionbudget.yaml"), &pdb); err != nil {
		t.Fatal(err)
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "imagegate" {
		t.Errorf("PodDisruptionBudget %+v", pdb.Spec)
	}
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/base/networkpolicy.yaml"), &np); err != nil {
		t.Fatal(err)
	}
	if len(np.Spec.Ingress) != 1 || np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "gatekeeper-system" || np.Spec.Ingress[0].Ports[0].Port.IntValue() != 8443 {
		t.Errorf("NetworkPolicy ingress %+v, want only gatekeeper-system on 8443", np.Spec.Ingress)
	}
	var svc corev1.Service
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/base/service.yaml"), &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Name != "imagegate" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8443 {
		t.Errorf("Service %s ports %+v, want imagegate:8443", svc.Name, svc.Spec.Ports)
	}
	var ns corev1.Namespace
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/base/namespace.yaml"), &ns); err != nil {
		t.Fatal(err)
	}
	if ns.Name != "imagegate-system" || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("Namespace %s labels %v, want imagegate-system enforcing the restricted Pod Security Standard", ns.Name, ns.Labels)
	}
	var sa corev1.ServiceAccount
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/base/serviceaccount.yaml"), &sa); err != nil {
		t.Fatal(err)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken || d.Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Errorf("ServiceAccount %s (automount %v) used by the Deployment as %q: want no token", sa.Name, sa.AutomountServiceAccountToken, d.Spec.Template.Spec.ServiceAccountName)
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, probeScheme string) {
	t.Helper()
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v, want at least 2", d.Spec.Replicas)
	}
	ps := d.Spec.Template.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot ||
		ps.SecurityContext.SeccompProfile == nil || ps.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v, want runAsNonRoot and seccomp RuntimeDefault", ps.SecurityContext)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("container securityContext %+v, want the restricted profile", sc)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		switch {
		case p.probe == nil:
			t.Errorf("no %s probe", p.name)
		case probeScheme == "HTTPS" && (p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Scheme != corev1.URISchemeHTTPS):
			t.Errorf("%s probe %+v, want HTTPS GET %s", p.name, p.probe.ProbeHandler, p.path)
		case probeScheme == "TCP" && p.probe.TCPSocket == nil:
			t.Errorf("%s probe %+v, want TCP", p.name, p.probe.ProbeHandler)
		}
	}
}

// TestKustomize builds the kustomizations with kubectl's built-in kustomize
// (skipped without kubectl), in a copy of gatekeeper/ with TLS files from
// `imagegate certs` (certs.Generate): the Providers get the CA as caBundle,
// which Gatekeeper's provider cache accepts; the build-only CA Secret is
// not emitted; imagegate's Secret, ConfigMap and mTLS component come out as
// documented.
func TestKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl not on PATH (this machine image ships it; it builds the kustomizations as `kubectl apply -k` would): %v", err)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(".")); err != nil {
		t.Fatal(err)
	}
	b, err := certs.Generate(filepath.Join(dir, "deploy", "tls"), nil)
	if err != nil {
		t.Fatal(err)
	}
	gkCA := filepath.Join(dir, "deploy", "components", "mtls", "gatekeeper-ca", "ca.crt")
	if err := os.WriteFile(gkCA, b.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(t *testing.T, sub string) map[string][]*unstructured.Unstructured {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), kubectl, "kustomize", filepath.Join(dir, sub)).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", sub, err, out)
		}
		byKind := map[string][]*unstructured.Unstructured{}
		for _, o := range parseObjects(t, sub, out) {
			byKind[o.GetKind()] = append(byKind[o.GetKind()], o)
		}
		return byKind
	}

	t.Run("gatekeeper", func(t *testing.T) {
		objs := build(t, ".")
		for kind, n := range map[string]int{"ConstraintTemplate": 7, "Provider": 2, "Assign": 7, "Config": 1, "Secret": 0} {
			if len(objs[kind]) != n {
				t.Errorf("%d %s, want %d", len(objs[kind]), kind, n)
			}
		}
		for _, p := range objs["Provider"] {
			ca, _, _ := unstructured.NestedString(p.Object, "spec", "caBundle")
			pem, err := base64.StdEncoding.DecodeString(ca)
			if err != nil || !bytes.Equal(pem, b.CAPEM) {
				t.Errorf("%s: caBundle is not base64 of deploy/tls/ca.crt (%v)", p.GetName(), err)
			}
			var up unversioned.Provider
			if err := runtimeConvert(p, &up); err != nil {
				t.Fatal(err)
			}
			if err := externaldata.NewCache().Upsert(&up); err != nil {
				t.Errorf("%s: Gatekeeper's provider cache refuses it: %v", p.GetName(), err)
			}
		}
	})

	t.Run("deploy", func(t *testing.T) {
		objs := build(t, "deploy")
		checkImagegate(t, objs, "HTTPS", "")
		if len(objs["Secret"]) != 1 || objs["Secret"][0].Object["type"] != "kubernetes.io/tls" {
			t.Fatalf("want one kubernetes.io/tls Secret, got %v", objs["Secret"])
		}
		data, _, _ := unstructured.NestedStringMap(objs["Secret"][0].Object, "data")
		for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
			if data[k] == "" {
				t.Errorf("TLS Secret has no %s", k)
			}
		}
	})

	t.Run("deploy with components", func(t *testing.T) {
		k := filepath.Join(dir, "deploy", "kustomization.yaml")
		s := string(readFile(t, k))
		s = strings.Replace(s, "# components:\n# - components/mtls\n# - components/gatekeeper-ignore", "components:\n- components/mtls\n- components/gatekeeper-ignore", 1)
		if err := os.WriteFile(k, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		objs := build(t, "deploy")
		checkImagegate(t, objs, "HTTPS", "/etc/imagegate/gatekeeper-ca/ca.crt")
		if ns := objs["Namespace"]; len(ns) != 1 || ns[0].GetLabels()["admission.gatekeeper.sh/ignore"] == "" {
			t.Errorf("components/gatekeeper-ignore: Namespaces %v, want imagegate-system labelled admission.gatekeeper.sh/ignore", ns)
		}
	})

	t.Run("cert-manager", func(t *testing.T) {
		objs := build(t, "deploy/cert-manager")
		if len(objs["Certificate"]) != 2 || len(objs["Issuer"]) != 2 || len(objs["Secret"]) != 0 {
			t.Errorf("want 2 Certificates, 2 Issuers and no Secret; got %d, %d, %d", len(objs["Certificate"]), len(objs["Issuer"]), len(objs["Secret"]))
		}
		checkImagegate(t, objs, "HTTPS", "")
	})
}

// checkImagegate checks a built deploy/: the ConfigMaps and Secrets the
// Deployment mounts exist, the config parses, the probes are as wanted.
func checkImagegate(t *testing.T, objs map[string][]*unstructured.Unstructured, probes, clientCA string) {
	t.Helper()
	for _, kind := range []string{"Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"} {
		if len(objs[kind]) == 0 {
			t.Errorf("no %s", kind)
		}
	}
	if len(objs["Deployment"]) != 1 {
		t.FailNow()
	}
	var d appsv1.Deployment
	if err := runtimeConvert(objs["Deployment"][0], &d); err != nil {
		t.Fatal(err)
	}
	if d.Namespace != "imagegate-system" {
		t.Errorf("Deployment namespace %q", d.Namespace)
	}
	checkDeployment(t, &d, probes)
	names := map[string]*unstructured.Unstructured{}
	for _, kind := range []string{"ConfigMap", "Secret"} {
		for _, o := range objs[kind] {
			names[kind+"/"+o.GetName()] = o
		}
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			cm, ok := names["ConfigMap/"+v.ConfigMap.Name]
			if !ok {
				t.Errorf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
				continue
			}
			if v.Name != "config" {
				continue
			}
			data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
			cfg, err := config.Parse([]byte(data["imagegate.yaml"]))
			if err != nil {
				t.Fatalf("ConfigMap %s: %v", cm.GetName(), err)
			}
			if cfg.TLS.ClientCAFile != clientCA {
				t.Errorf("clientCAFile %q, want %q", cfg.TLS.ClientCAFile, clientCA)
			}
		case v.Secret != nil && len(objs["Certificate"]) == 0:
			if _, ok := names["Secret/"+v.Secret.SecretName]; !ok {
				t.Errorf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
			}
		}
	}
}

func runtimeConvert(u *unstructured.Unstructured, into any) error {
	b, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return yaml.Unmarshal(b, into)
}
