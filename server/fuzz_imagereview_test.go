package server

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/imagegate/imagegate/providers/registry"
)

// FuzzDecodeImageReview: any body either decodes into an ImageReview that
// satisfies what the handler relies on (the right apiVersion and kind, at
// least one container, every image non-empty and within the reference
// length limit, the generic document policy sees agreeing with the typed
// one) and survives a round trip, or fails with a bad_request error that
// says what is wrong; it never panics. Seeds: testdata/fuzz/FuzzDecodeImageReview
// (a review recorded from a real kube-apiserver, and malformed variants).
func FuzzDecodeImageReview(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		review, input, err := DecodeImageReview(body)
		if err != nil {
			if !errors.Is(err, errBadRequest) || !strings.HasPrefix(err.Error(), "bad_request: ") || len(err.Error()) <= len("bad_request: ") {
				t.Fatalf("DecodeImageReview error %q: want a bad_request error with a reason", err)
			}
			if review != nil || input != nil {
				t.Fatal("DecodeImageReview returned a review with an error")
			}
			return
		}
		if review.APIVersion != imageReviewAPIVersion || review.Kind != "ImageReview" {
			t.Fatalf("accepted apiVersion %q kind %q", review.APIVersion, review.Kind)
		}
		if len(review.Spec.Containers) == 0 {
			t.Fatal("accepted a review without containers")
		}
		for i, c := range review.Spec.Containers {
			if c.Image == "" || len(c.Image) > registry.MaxReferenceLength {
				t.Fatalf("accepted containers[%d].image of %d bytes", i, len(c.Image))
			}
		}
		// Policy sees the same containers as the handler logs and counts.
		spec, _ := input["spec"].(map[string]any)
		cs, _ := spec["containers"].([]any)
		if len(cs) != len(review.Spec.Containers) {
			t.Fatalf("policy input has %d containers, the typed review %d", len(cs), len(review.Spec.Containers))
		}
		for i, c := range cs {
			m, _ := c.(map[string]any)
			if img, _ := m["image"].(string); img != review.Spec.Containers[i].Image {
				t.Fatalf("policy input containers[%d].image = %q, typed %q", i, img, review.Spec.Containers[i].Image)
			}
		}
		// Round trip: what was accepted, re-encoded, is accepted again as
		// the same review.
		b, err := json.Marshal(review)
		if err != nil {
			t.Fatalf("re-encoding an accepted review: %v", err)
		}
		again, _, err := DecodeImageReview(b)
		if err != nil {
			t.Fatalf("re-encoded review %s refused: %v", b, err)
		}
		if !reflect.DeepEqual(again.Spec, review.Spec) {
			t.Fatalf("round trip changed the spec: %+v → %+v", review.Spec, again.Spec)
		}
	})
}
