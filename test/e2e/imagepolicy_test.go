//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestImagePolicyWebhook runs kube-apiserver with the ImagePolicyWebhook
// admission plugin configured by examples/imagepolicywebhook (admission
// config, kubeconfig and imagegate config as written; only paths, hosts and
// the listen address substituted, see startImagegateFirst) and checks what
// client-go sees when it creates pods.
//
// How the example's policy maps onto the scenarios (policy.params as
// written):
//
//	namespace   mode                      registries allowed
//	prod-*      enforce, break-glass ok   Corp only (namespaces[0] rule)
//	dev-*       audit (admit, annotate)   Corp, Public (registries.allow)
//	other       enforce                   Corp, Public
//
// and everywhere: pinning.requireDigest, signature by key "release",
// age.maxAgeDays 90. Every scenario uses fresh namespaces and fresh images,
// so no answer comes from the apiserver's allowTTL/denyTTL cache.
func TestImagePolicyWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("control-plane end-to-end suite: skipped with -short")
	}
	e := startEnv(t)
	fresh := time.Now().Add(-time.Hour)

	t.Run("latest denied", func(t *testing.T) {
		ns := e.Namespace(t, "prod-latest")
		// Pushed and signed, so pinning is the only rule it breaks.
		pinned := e.PushImage(t, e.Corp, "e2e/latest", "latest", fresh)
		e.Sign(t, pinned)
		image := e.Corp + "/e2e/latest:latest"
		_, err := e.CreatePod(t, ns, nil, image)
		expectDenied(t, err,
			"image policy webhook backend denied one or more images: imagegate denied: ",
			fmt.Sprintf(`pinning: image %q uses the "latest" tag`, image),
		)
	})

	t.Run("signed pinned fresh admitted", func(t *testing.T) {
		ns := e.Namespace(t, "prod-signed")
		image := e.PushImage(t, e.Corp, "e2e/signed", "1.0", fresh)
		e.Sign(t, image)
		pod, err := e.CreatePod(t, ns, nil, image)
		expectAdmitted(t, e, pod, err)
	})

	t.Run("unsigned denied", func(t *testing.T) {
		ns := e.Namespace(t, "prod-unsigned")
		image := e.PushImage(t, e.Corp, "e2e/unsigned", "1.0", fresh)
		_, err := e.CreatePod(t, ns, nil, image)
		expectDenied(t, err, "imagegate denied: ", fmt.Sprintf("signature: image %q", image))
	})

	t.Run("too old denied", func(t *testing.T) {
		ns := e.Namespace(t, "prod-old")
		image := e.PushImage(t, e.Corp, "e2e/old", "1.0", time.Now().AddDate(-2, 0, 0))
		e.Sign(t, image)
		_, err := e.CreatePod(t, ns, nil, image)
		expectDenied(t, err, "imagegate denied: ", fmt.Sprintf("age: image %q was created", image), "more than maxAgeDays 90")
	})

	t.Run("wrong registry denied in prod allowed in dev", func(t *testing.T) {
		image := e.PushImage(t, e.Public, "e2e/public", "1.0", fresh)
		e.Sign(t, image)

		_, err := e.CreatePod(t, e.Namespace(t, "prod-registry"), nil, image)
		expectDenied(t, err, "imagegate denied: ", fmt.Sprintf("registry: image %q is from", image))

		pod, err := e.CreatePod(t, e.Namespace(t, "dev-registry"), nil, image)
		expectAdmitted(t, e, pod, err)
	})

	t.Run("audit namespace admits and records violations", func(t *testing.T) {
		ns := e.Namespace(t, "dev-audit")
		image := e.PushImage(t, e.Public, "e2e/dev-unsigned", "1.0", fresh)
		pod, err := e.CreatePod(t, ns, nil, image)
		expectAdmitted(t, e, pod, err)
		ev := e.AuditEvent(t, ns, pod.Name)
		expectAnnotation(t, ev, "imagepolicywebhook.image-policy.k8s.io/mode", "audit")
		expectAnnotationContains(t, ev, "imagepolicywebhook.image-policy.k8s.io/violations", fmt.Sprintf("signature: image %q", image))
	})

	t.Run("break-glass admitted and audited", func(t *testing.T) {
		image := e.PushImage(t, e.Corp, "e2e/emergency", "1.0", fresh) // unsigned
		breakGlass := map[string]string{"alpha.image-policy.k8s.io/break-glass": "true"}

		ns := e.Namespace(t, "prod-emergency")
		pod, err := e.CreatePod(t, ns, breakGlass, image)
		expectAdmitted(t, e, pod, err)
		ev := e.AuditEvent(t, ns, pod.Name)
		expectAnnotation(t, ev, "imagepolicywebhook.image-policy.k8s.io/break-glass", "true")
		expectAnnotationContains(t, ev, "imagepolicywebhook.image-policy.k8s.io/violations", fmt.Sprintf("signature: image %q", image))

		// breakGlass.namespaces is prod-*: elsewhere the annotation is refused.
		other := e.Namespace(t, "staging-emergency")
		_, err = e.CreatePod(t, other, breakGlass, image)
		expectDenied(t, err, "imagegate denied: ", fmt.Sprintf("signature: image %q", image),
			fmt.Sprintf(`(break-glass annotation "alpha.image-policy.k8s.io/break-glass" is not permitted in namespace %q)`, other))
	})

	// A registry outage is "could not look": imagegate answers 503 with the
	// reason as a Status, which the apiserver retries, reports in its
	// denial (defaultAllow: false) and does not cache; the same pod is
	// admitted as soon as the registry is back.
	t.Run("registry down is not a cached denial", func(t *testing.T) {
		image := e.PushImage(t, e.Corp, "e2e/outage", "1.0", fresh)
		e.Sign(t, image)
		ns := e.Namespace(t, "prod-outage")
		e.StopRegistry(t, e.Corp)
		restarted := false
		defer func() {
			if !restarted {
				e.StartRegistry(t, e.Corp)
			}
		}()
		start := time.Now()
		_, err := e.CreatePod(t, ns, nil, image)
		t.Logf("denial with the registry down took %v (a 503 without retry hint: not retried)", time.Since(start).Round(time.Millisecond))
		expectDenied(t, err, "imagegate could not check the images right now: ", fmt.Sprintf("facts: could not check image %q", image))
		if strings.Contains(err.Error(), "imagegate denied") {
			t.Errorf("a registry outage was answered as a policy denial (cached for denyTTL): %v", err)
		}
		e.StartRegistry(t, e.Corp)
		restarted = true
		pod, err := e.CreatePod(t, ns, nil, image)
		expectAdmitted(t, e, pod, err)
	})

	// Last: it takes imagegate down.
	t.Run("imagegate down fails closed and recovers after restart", func(t *testing.T) {
		image := e.PushImage(t, e.Corp, "e2e/failover", "1.0", fresh)
		e.Sign(t, image)
		apiserverPID, etcdPID := e.apiserver.PID, e.etcd.PID

		e.KillImagegate(t)
		start := time.Now()
		_, err := e.CreatePod(t, e.Namespace(t, "prod-down"), nil, image)
		// A refused connection is not retried (retryBackoff applies to 5xx,
		// 429 and dropped connections): the denial is immediate.
		t.Logf("denial with imagegate down took %v", time.Since(start).Round(time.Millisecond))
		expectDenied(t, err, e.imagegateAddr+"/v1/imagereview")
		if strings.Contains(err.Error(), "imagegate denied") {
			t.Errorf("denial came from a policy answer, not from the backend failure: %v", err)
		}

		e.StartImagegate(t)
		pod, err := e.CreatePod(t, e.Namespace(t, "prod-up"), nil, image)
		expectAdmitted(t, e, pod, err)
		if e.apiserver.PID != apiserverPID || !e.apiserver.Running() || e.etcd.PID != etcdPID || !e.etcd.Running() {
			t.Errorf("kube-apiserver/etcd were restarted or died: apiserver pid %d→%d running %v, etcd pid %d→%d running %v",
				apiserverPID, e.apiserver.PID, e.apiserver.Running(), etcdPID, e.etcd.PID, e.etcd.Running())
		}
	})
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return c
}

// Namespace creates a namespace named prefix-<random>.
func (e *env) Namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := prefix + "-" + randomSuffix(t)
	_, err := e.Client.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
	return ns
}

// CreatePod creates a pod with one container per image (nothing runs it:
// there is no scheduler or kubelet) and returns client-go's result.
func (e *env) CreatePod(t *testing.T, ns string, annotations map[string]string, images ...string) (*corev1.Pod, error) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app-" + randomSuffix(t), Namespace: ns, Annotations: annotations}}
	for i, image := range images {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: image})
	}
	created, err := e.Client.CoreV1().Pods(ns).Create(ctx(t), pod, metav1.CreateOptions{})
	if err != nil {
		t.Logf("create pod %s/%s %v: %v", ns, pod.Name, images, err)
		return pod, err
	}
	t.Logf("create pod %s/%s %v: admitted", ns, pod.Name, images)
	return created, nil
}

// expectDenied wants a Forbidden error whose message contains every want.
func expectDenied(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("pod admitted, want it denied with %q", want)
	}
	if !apierrors.IsForbidden(err) {
		t.Fatalf("error = %v (reason %q), want Forbidden", err, apierrors.ReasonForError(err))
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("denial %q\ndoes not contain %q", err.Error(), w)
		}
	}
}

// expectAdmitted wants no error, and the pod stored with its images.
func expectAdmitted(t *testing.T, e *env, pod *corev1.Pod, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("pod denied: %v", err)
	}
	got, err := e.Client.CoreV1().Pods(pod.Namespace).Get(ctx(t), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get admitted pod: %v", err)
	}
	for i, c := range pod.Spec.Containers {
		if got.Spec.Containers[i].Image != c.Image {
			t.Errorf("stored pod container %d image = %q, want %q", i, got.Spec.Containers[i].Image, c.Image)
		}
	}
}

// auditEvent is the part of an audit.k8s.io/v1 Event the suite reads.
type auditEvent struct {
	Stage     string `json:"stage"`
	Verb      string `json:"verb"`
	ObjectRef struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

// AuditEvent waits (the log is written after the response) for the
// ResponseComplete event of the pod's create in the apiserver's audit log.
func (e *env) AuditEvent(t *testing.T, ns, name string) auditEvent {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if ev, ok := findAuditEvent(t, e.auditLog, ns, name); ok {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ResponseComplete audit event for creating pod %s/%s in %s", ns, name, e.auditLog)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func findAuditEvent(t *testing.T, path, ns, name string) (auditEvent, bool) {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return auditEvent{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var ev auditEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // a line still being written
		}
		if ev.Stage == "ResponseComplete" && ev.Verb == "create" && ev.ObjectRef.Resource == "pods" &&
			ev.ObjectRef.Namespace == ns && ev.ObjectRef.Name == name {
			return ev, true
		}
	}
	return auditEvent{}, false
}

func expectAnnotation(t *testing.T, ev auditEvent, key, want string) {
	t.Helper()
	if got, ok := ev.Annotations[key]; !ok || got != want {
		t.Errorf("audit event annotation %s = %q (present %v), want %q; annotations: %v", key, got, ok, want, ev.Annotations)
	}
}

func expectAnnotationContains(t *testing.T, ev auditEvent, key, want string) {
	t.Helper()
	if got := ev.Annotations[key]; !strings.Contains(got, want) {
		t.Errorf("audit event annotation %s = %q, want it to contain %q", key, got, want)
	}
}
