package signature_test

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func mustDigest(t *testing.T, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
