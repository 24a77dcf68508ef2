package config

import (
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzParse: any document either parses into a config that validates and
// survives a round trip (marshalled back to YAML, it parses into the same
// config), or fails with an error that has a message; it never panics.
// Seeds: testdata/fuzz/FuzzParse (examples/config and invalid variants).
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := Parse(doc)
		if err != nil {
			if c != nil || strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("Parse error %q with config %v: want a message and no config", err, c)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
		if c.Listen == "" || c.Budget <= 0 || c.Limits.MaxBodyBytes <= 0 || c.Limits.MaxConcurrentRequests <= 0 || c.Server.ReadHeaderTimeout <= 0 {
			t.Fatalf("defaults not applied: %+v", c)
		}
		b, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshalling an accepted config: %v", err)
		}
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("re-marshalled config refused: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, again)
		}
	})
}
