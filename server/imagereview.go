package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/go-chi/chi/v5/middleware"
	imagepolicy "k8s.io/api/imagepolicy/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/rego"
)

// Policy evaluates ImageReview decisions. *rego.Engine implements it.
type Policy interface {
	Decide(ctx context.Context, input any, f rego.Facts) (any, error)
}

const imageReviewAPIVersion = "imagepolicy.k8s.io/v1alpha1"

// Decision is a policy's answer for one ImageReview.
type Decision struct {
	Allowed          bool              `json:"allowed"`
	Reason           string            `json:"reason"`
	AuditAnnotations map[string]string `json:"auditAnnotations"`
	// Unavailable marks a denial that is only "could not look right now"
	// (facts unreadable for a transient reason, nothing else wrong): the
	// server answers it with 503 so the apiserver retries it and does not
	// cache it as a denial. The bundled policy sets it; so may others.
	Unavailable bool `json:"unavailable,omitempty"`
}

// DecodeImageReview parses and validates an ImageReview body. It returns the
// typed review and the generic document policy sees (exactly what was sent).
//
// The body is decoded once, into the generic document, and validated there:
// JSON keys are case-sensitive as policy reads them. (A typed decode matches
// keys case-insensitively, so {"Spec": …} would pass its checks while policy
// saw no spec, no images, and admitted.) The typed review is built from the
// validated document.
func DecodeImageReview(body []byte) (*imagepolicy.ImageReview, map[string]any, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, bad("body is not an ImageReview: %v", err)
	}
	input, ok := doc.(map[string]any)
	if !ok {
		return nil, nil, bad("body is not an ImageReview: a JSON %s, want an object", jsonKind(doc))
	}
	apiVersion, _ := input["apiVersion"].(string)
	kind, _ := input["kind"].(string)
	if apiVersion != imageReviewAPIVersion || kind != "ImageReview" {
		return nil, nil, bad("apiVersion %q kind %q, want %q ImageReview", apiVersion, kind, imageReviewAPIVersion)
	}
	review := &imagepolicy.ImageReview{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}}
	spec, ok := input["spec"].(map[string]any)
	if !ok && input["spec"] != nil {
		return nil, nil, bad("spec is a JSON %s, want an object", jsonKind(input["spec"]))
	}
	if err := decodeReviewSpec(spec, &review.Spec); err != nil {
		return nil, nil, bad("%v", err)
	}
	return review, input, nil
}

// decodeReviewSpec checks the fields of spec the handler and policy rely on
// and copies them into the typed spec: containers (at least one, each with
// an image within the reference length limit), namespace and annotations
// (strings, as the API defines them).
func decodeReviewSpec(spec map[string]any, out *imagepolicy.ImageReviewSpec) error {
	cs, ok := spec["containers"].([]any)
	if !ok && spec["containers"] != nil {
		return fmt.Errorf("spec.containers is not a list but a JSON %s", jsonKind(spec["containers"]))
	}
	if len(cs) == 0 {
		return errors.New("spec.containers is empty")
	}
	out.Containers = make([]imagepolicy.ImageReviewContainerSpec, len(cs))
	for i, c := range cs {
		m, ok := c.(map[string]any)
		if !ok {
			return fmt.Errorf("spec.containers[%d] is a JSON %s, want an object", i, jsonKind(c))
		}
		image, ok := m["image"].(string)
		if !ok && m["image"] != nil {
			return fmt.Errorf("spec.containers[%d].image is not a string but a JSON %s", i, jsonKind(m["image"]))
		}
		if image == "" {
			return fmt.Errorf("spec.containers[%d].image is empty", i)
		}
		if len(image) > registry.MaxReferenceLength {
			return fmt.Errorf("spec.containers[%d].image is %d bytes, longer than %d", i, len(image), registry.MaxReferenceLength)
		}
		out.Containers[i].Image = image
	}
	if ns, ok := spec["namespace"]; ok && ns != nil {
		if out.Namespace, ok = ns.(string); !ok {
			return fmt.Errorf("spec.namespace is not a string but a JSON %s", jsonKind(ns))
		}
	}
	if a, ok := spec["annotations"]; ok && a != nil {
		m, ok := a.(map[string]any)
		if !ok {
			return fmt.Errorf("spec.annotations is not an object but a JSON %s", jsonKind(a))
		}
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("spec.annotations[%q] is not a string but a JSON %s", k, jsonKind(v))
			}
			if out.Annotations == nil {
				out.Annotations = make(map[string]string, len(m))
			}
			out.Annotations[k] = s
		}
	}
	return nil
}

// jsonKind names the JSON type of a value json.Unmarshal produced.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

// handleImageReview answers kube-apiserver's ImagePolicyWebhook. A policy
// denial is a 200 with allowed=false and a reason naming image and rule; a
// policy that cannot be evaluated denies (fail closed) with the reason. Only
// a server failure is a 5xx, so the apiserver's defaultAllow decides only then.
func (s *Server) handleImageReview(w http.ResponseWriter, r *http.Request) {
	if s.policy == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no policy engine configured"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.limits.MaxBodyBytes))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("%v: reading request body: %v", errBadRequest, err)})
		return
	}
	review, input, err := DecodeImageReview(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.budget)
	defer cancel()
	d, err := Evaluate(ctx, s.policy, input, s.lookup)
	if (err != nil || !d.Allowed) && ctx.Err() != nil && r.Context().Err() == nil {
		// The budget ran out before an admission could be decided: facts
		// still being fetched, or the policy still evaluating (whichever
		// noticed the deadline first; either way not a verdict). A 503,
		// which the apiserver retries and never caches as a denial (it
		// caches 200 denials for denyTTL), then answers by its defaultAllow.
		if err == nil {
			err = errors.New(d.Reason)
		}
		s.logger.LogAttrs(r.Context(), slog.LevelWarn, "image review over budget",
			slog.String("request_id", middleware.GetReqID(r.Context())), slog.String("error", err.Error()))
		s.metrics.decisions.WithLabelValues("over_budget").Inc()
		writeReviewUnavailable(w, fmt.Sprintf("imagegate could not evaluate image policy within its budget (%s): %v; retry", s.budget, err), 1)
		return
	}
	if err != nil {
		d = Decision{Allowed: false, Reason: "imagegate could not evaluate image policy: " + err.Error()}
		s.logger.LogAttrs(r.Context(), slog.LevelError, "policy evaluation failed",
			slog.String("request_id", middleware.GetReqID(r.Context())), slog.String("error", err.Error()))
	}
	if d.Unavailable {
		// Denied only because images could not be checked right now (rate
		// limited, timed out, registry down): "could not look", not a
		// verdict. A 503 the apiserver never caches as a denial (a 200
		// denial would stand for denyTTL after the registry recovered) and
		// does not retry: the failure came fast and will not clear in the
		// seconds a retry waits, and retries would add load to a registry
		// that is rate-limiting.
		s.logger.LogAttrs(r.Context(), slog.LevelWarn, "image review unavailable",
			slog.String("request_id", middleware.GetReqID(r.Context())),
			slog.String("namespace", review.Spec.Namespace), slog.String("reason", d.Reason))
		s.metrics.decisions.WithLabelValues("unavailable").Inc()
		writeReviewUnavailable(w, d.Reason, 0)
		return
	}
	result := "allowed"
	if !d.Allowed {
		result = "denied"
	}
	s.metrics.decisions.WithLabelValues(result).Inc()
	s.logger.LogAttrs(r.Context(), slog.LevelInfo, "image review",
		slog.String("request_id", middleware.GetReqID(r.Context())),
		slog.String("namespace", review.Spec.Namespace),
		slog.Int("containers", len(review.Spec.Containers)),
		slog.Bool("allowed", d.Allowed))
	writeJSON(w, http.StatusOK, imagepolicy.ImageReview{
		TypeMeta: metav1.TypeMeta{APIVersion: imageReviewAPIVersion, Kind: "ImageReview"},
		Status:   imagepolicy.ImageReviewStatus{Allowed: d.Allowed, Reason: d.Reason, AuditAnnotations: d.AuditAnnotations},
	})
}

// writeReviewUnavailable answers an ImageReview with 503 and reason as a
// metav1.Status. The apiserver's webhook client turns a Status body into the
// error it reports, so the user's "forbidden" message carries the reason
// (any other body reads "the server is currently unable to handle the
// request"), and it never caches the answer. retryAfter > 0 asks the
// apiserver's webhook to retry (its retryBackoff, 5 attempts at most) — for
// what a second attempt may well answer: a fetch that outlived the budget
// lands in the cache, a burst of requests passes. It goes in the Status
// details, never in a Retry-After header: client-go honours that header
// with up to 10 retries of its own inside each of the webhook's attempts,
// which kept a pod create waiting until the apiserver's request timeout
// (34 s in the end-to-end suite).
func writeReviewUnavailable(w http.ResponseWriter, reason string, retryAfter int) {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure,
		Message:  reason,
		Reason:   metav1.StatusReasonServiceUnavailable,
		Code:     http.StatusServiceUnavailable,
	}
	if retryAfter > 0 {
		st.Details = &metav1.StatusDetails{RetryAfterSeconds: int32(retryAfter)}
	}
	writeJSON(w, http.StatusServiceUnavailable, st)
}

// Evaluate runs the policy on an ImageReview document and reads its answer:
// {allowed, reason, auditAnnotations}, a whole ImageReview (OPA
// image_enforcer style: its status is used), or a bare boolean.
func Evaluate(ctx context.Context, p Policy, input any, f rego.Facts) (Decision, error) {
	res, err := p.Decide(ctx, input, f)
	if err != nil {
		return Decision{}, err
	}
	return decisionFrom(res)
}

func decisionFrom(v any) (Decision, error) {
	switch t := v.(type) {
	case bool:
		return Decision{Allowed: t}, nil
	case map[string]any:
		if st, ok := t["status"].(map[string]any); ok {
			return decisionFrom(st)
		}
		allowed, ok := t["allowed"].(bool)
		if !ok {
			return Decision{}, errors.New("policy result has no boolean \"allowed\" (want {allowed, reason, auditAnnotations} or an ImageReview)")
		}
		d := Decision{Allowed: allowed}
		d.Reason, _ = t["reason"].(string)
		d.Unavailable, _ = t["unavailable"].(bool)
		d.Unavailable = d.Unavailable && !allowed
		if ann, ok := t["auditAnnotations"].(map[string]any); ok && len(ann) > 0 {
			d.AuditAnnotations = make(map[string]string, len(ann))
			keys := make([]string, 0, len(ann))
			for k := range ann {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				switch v := ann[k].(type) {
				case string:
					d.AuditAnnotations[k] = v
				default:
					b, _ := json.Marshal(v)
					d.AuditAnnotations[k] = string(b)
				}
			}
		}
		if !d.Allowed && strings.TrimSpace(d.Reason) == "" {
			d.Reason = "denied by image policy"
		}
		return d, nil
	}
	return Decision{}, fmt.Errorf("policy result is %T, want {allowed, reason, auditAnnotations} or an ImageReview", v)
}
