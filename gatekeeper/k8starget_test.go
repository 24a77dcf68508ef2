package gatekeeper_test

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/open-policy-agent/frameworks/constraint/pkg/core/constraints"
	"github.com/open-policy-agent/frameworks/constraint/pkg/handler"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// k8sTarget is a small copy of Gatekeeper's admission.k8s.gatekeeper.sh
// target (gatekeeper pkg/target, v3.23.1), which lives in the Gatekeeper
// module this repository does not depend on. The Rego sees the same input:
// input.review is the AdmissionRequest (object, kind, name, namespace,
// operation, …) as JSON, exactly as Gatekeeper's gkReview embeds it.
// Matching covers what the samples use: kinds, namespaces,
// excludedNamespaces, labelSelector and namespaceSelector (against the
// labels in a namespace map the test sets).
type k8sTarget struct {
	// namespaces are the labels of known namespaces, for namespaceSelector.
	namespaces map[string]map[string]string
}

var _ handler.TargetHandler = (*k8sTarget)(nil)

const targetName = "admission.k8s.gatekeeper.sh"

func (*k8sTarget) GetName() string { return targetName }

// MatchSchema lets spec.match through unvalidated; Gatekeeper's target has
// the full schema of its match type.
func (*k8sTarget) MatchSchema() apiextensions.JSONSchemaProps {
	return apiextensions.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}
}

func (*k8sTarget) ProcessData(any) (bool, []string, any, error) { return false, nil, nil, nil }

// gkReview mirrors Gatekeeper's: the AdmissionRequest, embedded.
type gkReview struct {
	admissionv1.AdmissionRequest
}

func (r *gkReview) GetAdmissionRequest() *admissionv1.AdmissionRequest { return &r.AdmissionRequest }

// HandleReview turns an object into the AdmissionRequest of its CREATE, as
// Gatekeeper's unstructuredToAdmissionRequest does (gator's path), plus the
// operation the webhook would see.
func (*k8sTarget) HandleReview(obj any) (bool, any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return false, nil, nil
	}
	raw, err := u.MarshalJSON()
	if err != nil {
		return false, nil, err
	}
	gvk := u.GroupVersionKind()
	return true, &gkReview{AdmissionRequest: admissionv1.AdmissionRequest{
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Name:      u.GetName(),
		Namespace: u.GetNamespace(),
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}, nil
}

func (*k8sTarget) ValidateConstraint(*unstructured.Unstructured) error { return nil }

// match is the part of Gatekeeper's match type the samples use.
type match struct {
	Kinds []struct {
		APIGroups []string `json:"apiGroups"`
		Kinds     []string `json:"kinds"`
	} `json:"kinds"`
	Namespaces         []string              `json:"namespaces"`
	ExcludedNamespaces []string              `json:"excludedNamespaces"`
	LabelSelector      *metav1.LabelSelector `json:"labelSelector"`
	NamespaceSelector  *metav1.LabelSelector `json:"namespaceSelector"`
	Scope              string                `json:"scope"`
}

func (t *k8sTarget) ToMatcher(u *unstructured.Unstructured) (constraints.Matcher, error) {
	m, found, err := unstructured.NestedMap(u.Object, "spec", "match")
	if err != nil || !found {
		return &matcher{target: t}, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var mm match
	if err := json.Unmarshal(b, &mm); err != nil {
		return nil, fmt.Errorf("spec.match: %w", err)
	}
	return &matcher{target: t, m: &mm}, nil
}

type matcher struct {
	target *k8sTarget
	m      *match
}

func (m *matcher) Match(review any) (bool, error) {
	r, ok := review.(*gkReview)
	if !ok {
		return false, fmt.Errorf("review is %T, want *gkReview", review)
	}
	if m.m == nil {
		return true, nil
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(r.Object.Raw); err != nil {
		return false, err
	}
	return m.m.matches(obj, m.target.namespaces[obj.GetNamespace()])
}

// matches applies a match to an object and its namespace's labels.
func (mm *match) matches(obj *unstructured.Unstructured, nsLabels map[string]string) (bool, error) {
	gvk := obj.GroupVersionKind()
	if len(mm.Kinds) > 0 {
		found := false
		for _, k := range mm.Kinds {
			if anyMatch(k.APIGroups, gvk.Group) && anyMatch(k.Kinds, gvk.Kind) {
				found = true
			}
		}
		if !found {
			return false, nil
		}
	}
	ns := obj.GetNamespace()
	if mm.Scope == "Namespaced" && ns == "" && gvk.Kind != "Namespace" {
		// Gatekeeper treats objects without a namespace in an admission
		// request for a namespaced kind as in the request's namespace; the
		// tests give namespaced objects a namespace when scope matters.
		ns = "default"
	}
	if len(mm.Namespaces) > 0 && !globMatch(mm.Namespaces, ns) {
		return false, nil
	}
	if globMatch(mm.ExcludedNamespaces, ns) {
		return false, nil
	}
	if mm.LabelSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(mm.LabelSelector)
		if err != nil {
			return false, err
		}
		if !sel.Matches(labels.Set(obj.GetLabels())) {
			return false, nil
		}
	}
	if mm.NamespaceSelector != nil && ns != "" {
		sel, err := metav1.LabelSelectorAsSelector(mm.NamespaceSelector)
		if err != nil {
			return false, err
		}
		if !sel.Matches(labels.Set(nsLabels)) {
			return false, nil
		}
	}
	return true, nil
}

func anyMatch(list []string, v string) bool {
	for _, x := range list {
		if x == "*" || x == v {
			return true
		}
	}
	return false
}

// globMatch matches namespaces as Gatekeeper does: exact, or a trailing or
// leading '*'.
func globMatch(patterns []string, ns string) bool {
	for _, p := range patterns {
		switch {
		case p == ns:
			return true
		case strings.HasSuffix(p, "*") && strings.HasPrefix(ns, strings.TrimSuffix(p, "*")):
			return true
		case strings.HasPrefix(p, "*") && strings.HasSuffix(ns, strings.TrimPrefix(p, "*")):
			return true
		}
	}
	return false
}
