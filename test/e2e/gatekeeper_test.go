//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
)

// gkConstraint is a constraint of kind for Pods and Deployments in the
// namespaces matching nsGlob.
func gkConstraint(kind, name, action, nsGlob, params string) string {
	s := fmt.Sprintf(`apiVersion: constraints.gatekeeper.sh/v1beta1
kind: %s
metadata:
  name: %s
spec:
  enforcementAction: %s
  match:
    kinds:
    - apiGroups: [""]
      kinds: ["Pod"]
    - apiGroups: ["apps"]
      kinds: ["Deployment"]
    namespaces: [%q]
`, kind, name, action, nsGlob)
	if params != "" {
		s += "  parameters:\n" + params
	}
	return s
}

const releaseSigner = "    signers:\n    - key: release\n"

// TestGatekeeper runs the Gatekeeper manager (v3.23.1, out of cluster)
// behind kube-apiserver with the gatekeeper/ ConstraintTemplates (as
// generated), Providers (url and caBundle substituted) and Assigns, and
// imagegate with gatekeeper/deploy's mTLS config (registries and trust
// substituted, see startImagegateGatekeeper). Constraints are the suite's
// own, scoped by namespace:
//
//	gk-*        pinning (requireDigest) and signature (key release): deny
//	dryrun-*    signature: dryrun
//	warn-*      signature: warn
//	gk-mut-*    also the gatekeeper/mutation Assigns (tag → tag@digest)
//	gk-audit-*  also freshness (the audit scenario)
//
// Every scenario uses fresh images and namespaces.
func TestGatekeeper(t *testing.T) {
	if testing.Short() {
		t.Skip("control-plane end-to-end suite: skipped with -short")
	}
	e := startGatekeeperEnv(t)
	fresh := time.Now().Add(-time.Hour)

	setup := time.Now()
	e.Providers(t)
	for _, rule := range []string{"pinning", "signature", "freshness"} {
		e.Template(t, rule)
	}
	e.Constraint(t, gkConstraint("K8sImagegatePinning", "e2e-pinning", "deny", "gk-*", ""))
	e.Constraint(t, gkConstraint("K8sImagegateSignature", "e2e-signature", "deny", "gk-*", releaseSigner))
	e.Constraint(t, gkConstraint("K8sImagegateSignature", "e2e-signature-dryrun", "dryrun", "dryrun-*", releaseSigner))
	e.Constraint(t, gkConstraint("K8sImagegateSignature", "e2e-signature-warn", "warn", "warn-*", releaseSigner))
	freshness := e.Constraint(t, gkConstraint("K8sImagegateFreshness", "e2e-freshness", "deny", "gk-audit-*", ""))
	t.Logf("providers, templates and constraints ready in %v", time.Since(setup).Round(time.Millisecond))

	denied := `admission webhook "validation.gatekeeper.sh" denied the request: `

	t.Run("latest denied by pinning", func(t *testing.T) {
		ns := e.Namespace(t, "gk-latest")
		pinned := e.PushImage(t, e.Corp, "gk/latest", "latest", fresh)
		e.Sign(t, pinned)
		image := e.Corp + "/gk/latest:latest"
		_, err := e.CreatePod(t, ns, nil, image)
		expectDenied(t, err, denied, "[e2e-pinning] ", fmt.Sprintf(`pinning: image %q uses the "latest" tag`, image))
	})

	t.Run("unsigned denied by signature", func(t *testing.T) {
		ns := e.Namespace(t, "gk-unsigned")
		image := e.PushImage(t, e.Corp, "gk/unsigned", "1.0", fresh)
		_, err := e.CreatePod(t, ns, nil, image)
		expectDenied(t, err, denied, "[e2e-signature] ", fmt.Sprintf("signature: image %q", image))
	})

	t.Run("signed pinned admitted", func(t *testing.T) {
		ns := e.Namespace(t, "gk-signed")
		image := e.PushImage(t, e.Corp, "gk/signed", "1.0", fresh)
		e.Sign(t, image)
		pod, err := e.CreatePod(t, ns, nil, image)
		expectAdmitted(t, e, pod, err)
	})

	t.Run("deployment unsigned denied signed admitted", func(t *testing.T) {
		ns := e.Namespace(t, "gk-deploy")
		unsigned := e.PushImage(t, e.Corp, "gk/deploy-unsigned", "1.0", fresh)
		_, err := e.CreateDeployment(t, e.Client, ns, unsigned)
		expectDenied(t, err, denied, "[e2e-signature] ", fmt.Sprintf("signature: image %q", unsigned))

		signed := e.PushImage(t, e.Corp, "gk/deploy-signed", "1.0", fresh)
		e.Sign(t, signed)
		d, err := e.CreateDeployment(t, e.Client, ns, signed)
		if err != nil {
			t.Fatalf("deployment denied: %v", err)
		}
		if got := d.Spec.Template.Spec.Containers[0].Image; got != signed {
			t.Errorf("stored deployment image = %q, want %q", got, signed)
		}
	})

	t.Run("dryrun admits", func(t *testing.T) {
		ns := e.Namespace(t, "dryrun")
		image := e.PushImage(t, e.Corp, "gk/dryrun", "1.0", fresh)
		cs, w := e.WarningClient(t)
		pod, err := createPod(t, cs, ns, image)
		expectAdmitted(t, e, pod, err)
		if got := w.All(); len(got) != 0 {
			t.Errorf("dryrun produced warnings %q, want none", got)
		}
	})

	t.Run("warn admits with a warning", func(t *testing.T) {
		ns := e.Namespace(t, "warn")
		image := e.PushImage(t, e.Corp, "gk/warn", "1.0", fresh)
		cs, w := e.WarningClient(t)
		pod, err := createPod(t, cs, ns, image)
		expectAdmitted(t, e, pod, err)
		t.Logf("warnings: %q", w.All())
		expectSomeContains(t, "admission warning", w.All(), "[e2e-signature-warn] ", fmt.Sprintf("signature: image %q", image))
	})

	t.Run("mutation pins tag to the verified digest", func(t *testing.T) {
		e.Assigns(t, "gk-mut-*")
		ns := e.Namespace(t, "gk-mut")
		pinned := e.PushImage(t, e.Corp, "gk/mutate", "1.0", fresh)
		e.Sign(t, pinned)
		tagged := e.Corp + "/gk/mutate:1.0"
		pod, err := e.CreatePod(t, ns, nil, tagged)
		if err != nil {
			t.Fatalf("pod denied: %v", err)
		}
		got, err := e.Client.CoreV1().Pods(ns).Get(ctx(t), pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := got.Spec.Containers[0].Image; img != pinned {
			t.Errorf("stored image = %q, want %q (tag rewritten to the digest imagegate verified)", img, pinned)
		}
	})

	t.Run("audit reports a moved tag", func(t *testing.T) {
		ns := e.Namespace(t, "gk-audit")
		image := e.PushImage(t, e.Corp, "gk/audit", "1.0", fresh)
		e.Sign(t, image)
		pod, err := e.CreatePod(t, ns, nil, image)
		expectAdmitted(t, e, pod, err)
		moved := e.PushImage(t, e.Corp, "gk/audit", "1.0", fresh) // re-push: the tag moves
		t.Logf("tag %s/gk/audit:1.0 moved to %s", e.Corp, moved)
		movedPrefix := moved[strings.LastIndex(moved, "@")+1:][:len("sha256:")+12]
		e.WaitObject(t, freshness, 2*time.Minute, func(u *unstructured.Unstructured) error {
			vs, _, _ := unstructured.NestedSlice(u.Object, "status", "violations")
			for _, v := range vs {
				m, _ := v.(map[string]any)
				msg := fmt.Sprint(m["message"])
				if m["namespace"] == ns && m["name"] == pod.Name &&
					strings.Contains(msg, fmt.Sprintf("freshness: image %q pins ", image)) &&
					// status.violations cuts messages at 256 characters
					strings.Contains(msg, `but tag "1.0" now points to `+movedPrefix) {
					t.Logf("audit violation: %s", shortJSON(m))
					return nil
				}
			}
			at, _, _ := unstructured.NestedString(u.Object, "status", "auditTimestamp")
			return fmt.Errorf("no violation for pod %s/%s yet (audit at %s, %d violations)", ns, pod.Name, at, len(vs))
		})
	})

	// Last: it takes imagegate down.
	t.Run("imagegate down fails closed and recovers after restart", func(t *testing.T) {
		image := e.PushImage(t, e.Corp, "gk/failover", "1.0", fresh)
		e.Sign(t, image)
		gkPID, apiserverPID := e.gk.proc.PID, e.apiserver.PID

		e.KillImagegate(t)
		_, err := e.CreatePod(t, e.Namespace(t, "gk-down"), nil, image)
		expectDenied(t, err, denied, "[e2e-signature] ", fmt.Sprintf("signature: image %q could not be checked", image), "imagegate-facts request failed")

		e.StartImagegate(t)
		// A failed request is never cached; the next admission asks again.
		pod, err := e.CreatePod(t, e.Namespace(t, "gk-up"), nil, image)
		expectAdmitted(t, e, pod, err)
		if e.gk.proc.PID != gkPID || !e.gk.proc.Running() || e.apiserver.PID != apiserverPID || !e.apiserver.Running() {
			t.Errorf("gatekeeper/kube-apiserver were restarted or died")
		}
	})
}

// Assigns applies gatekeeper/mutation's Assigns, limited to the namespaces
// matching nsGlob (so they do not touch the other scenarios), and waits
// until they are enforced.
func (e *env) Assigns(t *testing.T, nsGlob string) {
	t.Helper()
	for _, f := range []string{
		"assign-pod-containers.yaml", "assign-pod-initcontainers.yaml", "assign-pod-ephemeralcontainers.yaml",
		"assign-workload-containers.yaml", "assign-workload-initcontainers.yaml",
		"assign-cronjob-containers.yaml", "assign-cronjob-initcontainers.yaml",
	} {
		for _, u := range decodeYAML(t, f, e.render(t, "gatekeeper/mutation/"+f)) {
			if err := unstructured.SetNestedStringSlice(u.Object, []string{nsGlob}, "spec", "match", "namespaces"); err != nil {
				t.Fatal(err)
			}
			e.ApplyObject(t, u)
			e.WaitObject(t, u, time.Minute, statusFlag("enforced"))
		}
	}
}

func createPod(t *testing.T, cs kubernetes.Interface, ns string, image string) (*corev1.Pod, error) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-" + randomSuffix(t), Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c0", Image: image}}},
	}
	created, err := cs.CoreV1().Pods(ns).Create(ctx(t), pod, metav1.CreateOptions{})
	if err != nil {
		t.Logf("create pod %s/%s %s: %v", ns, pod.Name, image, err)
		return pod, err
	}
	t.Logf("create pod %s/%s %s: admitted", ns, pod.Name, image)
	return created, nil
}

// CreateDeployment creates a one-container Deployment (no controller
// manager runs, so it never gets pods).
func (e *env) CreateDeployment(t *testing.T, cs kubernetes.Interface, ns, image string) (*appsv1.Deployment, error) {
	t.Helper()
	labels := map[string]string{"app": "e2e"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "app-" + randomSuffix(t), Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c0", Image: image}}},
			},
		},
	}
	created, err := cs.AppsV1().Deployments(ns).Create(ctx(t), d, metav1.CreateOptions{})
	if err != nil {
		t.Logf("create deployment %s/%s %s: %v", ns, d.Name, image, err)
		return d, err
	}
	t.Logf("create deployment %s/%s %s: admitted", ns, d.Name, image)
	return created, nil
}
