package signature_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

// TestThrottledListingIsTransient: a registry that throttles or fails the
// signature listings must make the facts "could not look" (transient,
// uncached), never "unsigned". The faults are injected into the real
// registry because a real one cannot be made to throttle on demand.
func TestThrottledListingIsTransient(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		match string
		code  int
	}{
		{desc: "referrers 429", match: "/referrers/", code: http.StatusTooManyRequests},
		{desc: "legacy .sig tag 503", match: ".sig", code: http.StatusServiceUnavailable},
		{desc: "legacy .att tag 500", match: ".att", code: http.StatusInternalServerError},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg := registrytest.New(t)
			d := reg.PushImage(t, "acme/app", "v1", registrytest.Image{Created: time.Now()})
			key := reg.Host + "/acme/app@" + d.String()
			svc := service(t, reg.Host, map[string]string{"release": filepath.Join("testdata", "cosign", "cosign.pub")})
			reg.Fail(func(r *http.Request) int {
				if strings.Contains(r.URL.Path, tc.match) {
					return tc.code
				}
				return 0
			})
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			_, err := svc.Facts(ctx, key)
			if facts.CodeOf(err) != facts.CodeUnavailable {
				t.Fatalf("Facts() error = %v, want a transient unavailable error", err)
			}
			reg.Fail(nil)
			f, err := svc.Facts(ctx, key)
			if err != nil {
				t.Fatalf("after the fault cleared: %v (a transient failure must not be cached)", err)
			}
			if len(f.Signatures) != 0 || len(f.VerificationErrors) != 0 {
				t.Errorf("unsigned image: signatures %+v errors %q, want none", f.Signatures, f.VerificationErrors)
			}
		})
	}
}
