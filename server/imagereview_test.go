package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/server/config"
)

type reviewStatus struct {
	Allowed          bool              `json:"allowed"`
	Reason           string            `json:"reason"`
	AuditAnnotations map[string]string `json:"auditAnnotations"`
}

type reviewResponse struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Status     reviewStatus `json:"status"`
}

// unavailableStatus is a 503 answer: a metav1.Status, which the apiserver
// reports as the reason of its denial.
type unavailableStatus struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Status     string `json:"status"`
	Message    string `json:"message"`
	Reason     string `json:"reason"`
	Code       int    `json:"code"`
	Details    *struct {
		RetryAfterSeconds int `json:"retryAfterSeconds"`
	} `json:"details"`
}

// unavailable decodes a 503 answer and checks its shape: a v1 Status,
// Failure, ServiceUnavailable, code 503, a retry hint in the details when
// retryAfter > 0 and none otherwise.
func unavailable(t *testing.T, raw string, retryAfter int) unavailableStatus {
	t.Helper()
	var st unavailableStatus
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatalf("503 body is not JSON: %v\n%s", err, raw)
	}
	got := 0
	if st.Details != nil {
		got = st.Details.RetryAfterSeconds
	}
	if st.APIVersion != "v1" || st.Kind != "Status" || st.Status != "Failure" || st.Reason != "ServiceUnavailable" || st.Code != 503 || got != retryAfter {
		t.Errorf("503 body = %s, want a v1 Status, Failure, ServiceUnavailable, code 503, retryAfterSeconds %d", raw, retryAfter)
	}
	return st
}

func imageReview(namespace string, annotations map[string]string, images ...string) []byte {
	var cs []map[string]string
	for _, i := range images {
		cs = append(cs, map[string]string{"image": i})
	}
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview",
		"spec":   map[string]any{"containers": cs, "annotations": annotations, "namespace": namespace},
		"status": map[string]any{"allowed": false},
	})
	return b
}

func (h *harness) review(t *testing.T, body []byte) (int, reviewResponse, string) {
	t.Helper()
	resp, err := h.client.Post(h.base+"/v1/imagereview?timeout=30s", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r reviewResponse
	_ = json.Unmarshal(raw, &r)
	return resp.StatusCode, r, string(raw)
}

// TestImageReviewDefaultPolicy: the embedded policy with no params needs no
// facts: it pins and checks registries without a single registry request.
func TestImageReviewDefaultPolicy(t *testing.T) {
	reg := registrytest.New(t)
	d := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	h := start(t, reg, nil)
	reg.ResetCounts()
	for _, tc := range []struct {
		desc, image string
		allowed     bool
		reason      []string
	}{
		{desc: "latest", image: reg.Host + "/team/app:latest", reason: []string{`pinning: image "` + reg.Host + `/team/app:latest" uses the "latest" tag`}},
		{desc: "tag only", image: reg.Host + "/team/app:v1", reason: []string{`pinning: image "` + reg.Host + `/team/app:v1" is not pinned to a digest`}},
		{desc: "digest", image: reg.Host + "/team/app@" + d.String(), allowed: true},
		{desc: "tag and digest", image: reg.Host + "/team/app:v1@" + d.String(), allowed: true},
		{desc: "registry not allowed", image: "ghcr.io/acme/app@" + d.String(), reason: []string{`registry: image "ghcr.io/acme/app@` + d.String() + `"`}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			status, r, raw := h.review(t, imageReview("prod", nil, tc.image))
			if status != http.StatusOK || r.Kind != "ImageReview" || r.APIVersion != "imagepolicy.k8s.io/v1alpha1" {
				t.Fatalf("response %d %s", status, raw)
			}
			if r.Status.Allowed != tc.allowed {
				t.Errorf("allowed = %v (reason %q), want %v", r.Status.Allowed, r.Status.Reason, tc.allowed)
			}
			for _, want := range tc.reason {
				if !strings.Contains(r.Status.Reason, want) {
					t.Errorf("reason = %q, want it to contain %q", r.Status.Reason, want)
				}
			}
		})
	}
	if got := reg.Total(); got != 0 {
		t.Errorf("registry saw %d requests; a policy without fact rules must make none", got)
	}
}

// TestImageReviewSignaturePolicy exercises the fact rules end to end: real
// keyless bundles attached as referrers, namespaces in audit mode, exempt
// namespaces, break-glass, and fail-closed on facts that could not be read.
func TestImageReviewSignaturePolicy(t *testing.T) {
	reg := registrytest.New(t)
	signed := reg.PushImage(t, "team/app", "signed", registrytest.Image{Created: time.Now()})
	unsigned := reg.PushImage(t, "team/app", "unsigned", registrytest.Image{Created: time.Now()})
	ss := signaturetest.NewSigstore(t)
	rootFile := ss.WriteTrustedRoot(t, t.TempDir())
	id := signaturetest.Identity{Issuer: "https://token.actions.githubusercontent.com", Subject: "https://github.com/team/app/.github/workflows/release.yml@refs/tags/v1"}
	signaturetest.AttachReferrer(t, reg.Host, "team/app", subject(t, reg, "team/app", signed), ss.SignImage(t, id, signed.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{}), signature.CosignSignPredicate)

	h := start(t, reg, func(c *config.Config) {
		c.Trust.TrustedRoots = map[string]string{"test": rootFile}
		c.Policy.Params = map[string]any{
			"rules": map[string]any{
				"signature": map[string]any{"signers": []any{map[string]any{"issuer": id.Issuer, "subject": id.Subject}}},
			},
			"exempt":     []any{"kube-system"},
			"audit":      []any{"dev-*"},
			"breakGlass": map[string]any{"namespaces": []any{"prod-emergency"}},
		}
	})
	signedRef := reg.Host + "/team/app:signed@" + signed.String()
	unsignedRef := reg.Host + "/team/app:unsigned@" + unsigned.String()
	breakGlass := map[string]string{"alpha.image-policy.k8s.io/break-glass": "true"}

	for _, tc := range []struct {
		desc        string
		namespace   string
		annotations map[string]string
		images      []string
		allowed     bool
		reason      string
		audit       map[string]string
	}{
		{desc: "signed", namespace: "prod", images: []string{signedRef}, allowed: true},
		{desc: "unsigned", namespace: "prod", images: []string{signedRef, unsignedRef}, reason: `signature: image "` + unsignedRef + `"`},
		{desc: "audit namespace", namespace: "dev-alice", images: []string{unsignedRef}, allowed: true, reason: "audit mode, would deny: signature:", audit: map[string]string{"mode": "audit"}},
		{desc: "exempt namespace", namespace: "kube-system", images: []string{unsignedRef}, allowed: true, audit: map[string]string{"mode": "exempt"}},
		{desc: "break-glass where permitted", namespace: "prod-emergency", annotations: breakGlass, images: []string{unsignedRef}, allowed: true, reason: "break-glass", audit: map[string]string{"break-glass": "true"}},
		{desc: "break-glass elsewhere", namespace: "prod", annotations: breakGlass, images: []string{unsignedRef}, reason: `is not permitted in namespace "prod"`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, r, raw := h.review(t, imageReview(tc.namespace, tc.annotations, tc.images...))
			if r.Status.Allowed != tc.allowed || !strings.Contains(r.Status.Reason, tc.reason) {
				t.Errorf("status = %+v, want allowed %v with reason containing %q\n%s", r.Status, tc.allowed, tc.reason, raw)
			}
			for k, v := range tc.audit {
				if r.Status.AuditAnnotations[k] != v {
					t.Errorf("auditAnnotations[%q] = %q, want %q (all: %v)", k, r.Status.AuditAnnotations[k], v, r.Status.AuditAnnotations)
				}
			}
		})
	}

	// A registry that rate-limits is "could not look", not a verdict: a 503
	// with Retry-After (the apiserver retries it, never caches it as a
	// denial, and its defaultAllow decides if the failure lasts), with the
	// image and the cause in the reason; audit namespaces still admit; once
	// the registry recovers the same review is admitted (nothing cached).
	t.Run("facts unavailable fails closed with a 503", func(t *testing.T) {
		fresh := reg.PushImage(t, "team/app", "fresh", registrytest.Image{Created: time.Now()})
		key := reg.Host + "/team/app:fresh@" + fresh.String()
		signaturetest.AttachReferrer(t, reg.Host, "team/app", subject(t, reg, "team/app", fresh), ss.SignImage(t, id, fresh.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{}), signature.CosignSignPredicate)
		reg.Fail(func(r *http.Request) int {
			if strings.Contains(r.URL.Path, "/referrers/") {
				return http.StatusTooManyRequests
			}
			return 0
		})
		code, _, raw := h.review(t, imageReview("prod", nil, key))
		st := unavailable(t, raw, 0) // no retry: it failed fast, and would hit the registry again
		if code != http.StatusServiceUnavailable ||
			!strings.HasPrefix(st.Message, "imagegate could not check the images right now: ") ||
			!strings.Contains(st.Message, `facts: could not check image "`+key+`"`) || !strings.Contains(st.Message, "429") {
			t.Errorf("HTTP %d %s, want 503 saying the image could not be checked (429)", code, raw)
		}
		_, r, _ := h.review(t, imageReview("dev-bob", nil, key))
		if !r.Status.Allowed || r.Status.AuditAnnotations["mode"] != "audit" {
			t.Errorf("audit namespace: status = %+v, want admitted and recorded", r.Status)
		}
		// Another violation as well (an unsigned image): a plain 200 denial.
		code, r, raw = h.review(t, imageReview("prod", nil, key, unsignedRef))
		if code != http.StatusOK || r.Status.Allowed || !strings.HasPrefix(r.Status.Reason, "imagegate denied: ") {
			t.Errorf("with an unsigned image too: HTTP %d, status = %+v, want a 200 denial\n%s", code, r.Status, raw)
		}
		reg.Fail(nil)
		code, r, raw = h.review(t, imageReview("prod", nil, key))
		if code != http.StatusOK || !r.Status.Allowed {
			t.Errorf("after the registry recovered: HTTP %d, status = %+v, want admitted\n%s", code, r.Status, raw)
		}
	})
}

// TestImageReviewFetchesImagesInParallel: the registry holds each image's tag
// HEAD until both have arrived, so sequential fetching could never finish.
func TestImageReviewFetchesImagesInParallel(t *testing.T) {
	reg := registrytest.New(t)
	a := reg.PushImage(t, "team/a", "v1", registrytest.Image{Created: time.Now()})
	b := reg.PushImage(t, "team/b", "v1", registrytest.Image{Created: time.Now()})
	h := start(t, reg, func(c *config.Config) {
		c.Budget = config.Duration(10 * time.Second)
		c.Limits.FetchTimeout = config.Duration(10 * time.Second)
		c.Policy.Params = map[string]any{"rules": map[string]any{"age": map[string]any{"maxAgeDays": 30}}}
	})
	var mu sync.Mutex
	arrived := 0
	both := make(chan struct{})
	reg.Delay(time.Nanosecond, func(r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/sha256:") {
			return false
		}
		mu.Lock()
		arrived++
		if arrived == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
		case <-time.After(5 * time.Second):
		}
		return false
	})
	_, r, raw := h.review(t, imageReview("prod", nil, reg.Host+"/team/a:v1@"+a.String(), reg.Host+"/team/b:v1@"+b.String()))
	select {
	case <-both:
	default:
		t.Fatalf("the two images' manifests were never fetched at the same time: %s", raw)
	}
	if !r.Status.Allowed {
		t.Errorf("status = %+v, want allowed", r.Status)
	}
}

func TestImageReviewBadRequests(t *testing.T) {
	h := start(t, nil, func(c *config.Config) { c.Registries.Allow = []string{"ghcr.io"} })
	for _, tc := range []struct{ desc, body, want string }{
		{desc: "not JSON", body: "nope", want: "not an ImageReview"},
		{desc: "wrong kind", body: `{"apiVersion":"imagepolicy.k8s.io/v1alpha1","kind":"Pod","spec":{"containers":[{"image":"a"}]}}`, want: `Pod`},
		{desc: "no containers", body: `{"apiVersion":"imagepolicy.k8s.io/v1alpha1","kind":"ImageReview","spec":{"containers":[]}}`, want: "spec.containers is empty"},
		{desc: "empty image", body: `{"apiVersion":"imagepolicy.k8s.io/v1alpha1","kind":"ImageReview","spec":{"containers":[{"image":""}]}}`, want: "spec.containers[0].image is empty"},
		// JSON object keys are case-sensitive, as policy reads them: a
		// "Spec" must not stand in for "spec" (a typed decode would match
		// it, and policy would then see no images at all and admit).
		{desc: "spec in other case", body: `{"apiVersion":"imagepolicy.k8s.io/v1alpha1","kind":"ImageReview","Spec":{"containers":[{"image":"nginx:latest"}]}}`, want: "spec.containers is empty"},
		{desc: "spec twice in two cases", body: `{"apiVersion":"imagepolicy.k8s.io/v1alpha1","kind":"ImageReview","spec":{"containers":[]},"Spec":{"containers":[{"image":"nginx:latest"}]}}`, want: "spec.containers is empty"},
		{desc: "image in other case", body: `{"apiVersion":"imagepolicy.k8s.io/v1alpha1","kind":"ImageReview","spec":{"containers":[{"Image":"nginx:latest"}]}}`, want: "spec.containers[0].image is empty"},
		{desc: "apiVersion in other case", body: `{"APIVersion":"imagepolicy.k8s.io/v1alpha1","kind":"ImageReview","spec":{"containers":[{"image":"a"}]}}`, want: `apiVersion \"\" kind`},
		{desc: "containers not a list", body: `{"apiVersion":"imagepolicy.k8s.io/v1alpha1","kind":"ImageReview","spec":{"containers":{"image":"a"}}}`, want: "spec.containers is not a list"},
		{desc: "image not a string", body: `{"apiVersion":"imagepolicy.k8s.io/v1alpha1","kind":"ImageReview","spec":{"containers":[{"image":1}]}}`, want: "spec.containers[0].image is not a string"},
		{desc: "annotation not a string", body: `{"apiVersion":"imagepolicy.k8s.io/v1alpha1","kind":"ImageReview","spec":{"containers":[{"image":"a"}],"annotations":{"x":true}}}`, want: `spec.annotations[\"x\"] is not a string`},
		{desc: "not an object", body: `["ImageReview"]`, want: "not an ImageReview"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			status, _, raw := h.review(t, []byte(tc.body))
			if status != http.StatusBadRequest || !strings.Contains(raw, tc.want) {
				t.Errorf("response %d %s, want 400 mentioning %q", status, raw, tc.want)
			}
		})
	}
}

// subject describes repo@d for AttachReferrer.
func subject(t *testing.T, reg *registrytest.Registry, repo string, d v1.Hash) v1.Descriptor {
	t.Helper()
	ref, err := name.NewDigest(reg.Host+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}
}

// TestImageReviewOverBudget: when the budget runs out before the review
// could be admitted (here: the registry is slower than the budget, so the
// facts builtin or the evaluation notices the deadline, depending on
// timing), the answer is a 503 saying so, with Retry-After, not a 200
// denial the apiserver would cache for denyTTL; the fetch carries on, and
// the next review is decided.
func TestImageReviewOverBudget(t *testing.T) {
	reg := registrytest.New(t)
	d := reg.PushImage(t, "team/slow", "v1", registrytest.Image{Created: time.Now()})
	h := start(t, reg, func(c *config.Config) {
		c.Budget = config.Duration(300 * time.Millisecond)
		c.Policy.Params = map[string]any{"rules": map[string]any{"age": map[string]any{"maxAgeDays": 30}}}
	})
	reg.Delay(time.Second, func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/") })
	key := reg.Host + "/team/slow:v1@" + d.String()
	start := time.Now()
	status, _, raw := h.review(t, imageReview("prod", nil, key))
	if st := unavailable(t, raw, 1); status != http.StatusServiceUnavailable || !strings.Contains(st.Message, "within its budget (300ms)") {
		t.Fatalf("over budget: %d %s, want 503, message naming the budget", status, raw)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("over-budget answer took %v", took)
	}
	reg.Delay(0, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, r, raw := h.review(t, imageReview("prod", nil, key))
		if status == http.StatusOK && r.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("once the registry is fast again: %d %s, want allowed within 5s", status, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
