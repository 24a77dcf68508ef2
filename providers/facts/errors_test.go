package facts

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodes(t *testing.T) {
	for _, tc := range []struct {
		desc       string
		err        error
		code       Code
		definitive bool
	}{
		{desc: "not found", err: Errorf(CodeNotFound, "a:1", "gone"), code: CodeNotFound, definitive: true},
		{desc: "wrapped", err: fmt.Errorf("outer: %w", Errorf(CodeUnauthorized, "a:1", "no")), code: CodeUnauthorized, definitive: true},
		{desc: "transient", err: Errorf(CodeUnavailable, "a:1", "503"), code: CodeUnavailable},
		{desc: "unknown error is transient", err: errors.New("boom"), code: CodeUnavailable},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := CodeOf(tc.err); got != tc.code {
				t.Errorf("CodeOf() = %q, want %q", got, tc.code)
			}
			if got := CodeOf(tc.err).Definitive(); got != tc.definitive {
				t.Errorf("Definitive() = %v, want %v", got, tc.definitive)
			}
			var fe *Error
			if errors.As(tc.err, &fe) && errors.Is(tc.err, ErrTransient) == tc.definitive {
				t.Errorf("errors.Is(ErrTransient) = %v, want %v", !tc.definitive, !tc.definitive)
			}
		})
	}
	if got, want := Errorf(CodeNotFound, "ghcr.io/a:1", "tag %s", "1").Error(), "not_found: ghcr.io/a:1: tag 1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestNormalize(t *testing.T) {
	f := Facts{Config: &Config{}, Platforms: []Platform{{Config: &Config{}}}}
	f.Normalize()
	if f.Signatures == nil || f.Attestations == nil || f.VerificationErrors == nil || f.Config.Labels == nil || f.Platforms[0].Config.Labels == nil {
		t.Errorf("Normalize left nil lists or maps: %+v", f)
	}
}
