package lookup

import (
	"testing"

	"github.com/imagegate/imagegate/providers/registry"
)

// TestKeyStateReference: the reference a keyState gives back is the
// parser's, for keys whose parts are substrings of the key and for keys
// that needed normalising.
func TestKeyStateReference(t *testing.T) {
	const d = "sha256:ba10d76887ab878169f2d5b0ef43aa057c7ea9cb24c352ae919d46b3bdbd9428"
	for _, key := range []string{
		"registry.example:5000/team/app:v1@" + d,
		"registry.example/team/app@" + d,
		"registry.example/team/app:v1",
		"registry.example/team/app",
		"nginx",
		"nginx:1.27@" + d,
		"Registry.Example/team/app:v1",
		"index.docker.io/library/nginx@" + d,
		"localhost/app",
	} {
		ref, err := registry.Parse(key, nil)
		if err != nil {
			t.Fatalf("Parse(%q): %v", key, err)
		}
		ks := newKeyState(key, ref.Facts, nil)
		// A copy of the key: the spans apply to any string equal to it.
		other := string([]byte(key))
		if got := ks.reference(other); got != ref.Facts {
			t.Errorf("%q: reference = %+v, want %+v", key, got, ref.Facts)
		}
	}
}
