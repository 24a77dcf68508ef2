package gatekeeper_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/unversioned"
	constraintclient "github.com/open-policy-agent/frameworks/constraint/pkg/client"
	"github.com/open-policy-agent/frameworks/constraint/pkg/types"
	yaml3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// suite is gator's Suite (gatekeeper pkg/gator/verify, v3.23.1): the
// fields gatekeeper-library's suite.yaml files use.
type suite struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Tests []struct {
		Name       string `json:"name"`
		Template   string `json:"template"`
		Constraint string `json:"constraint"`
		Cases      []struct {
			Name       string      `json:"name"`
			Object     string      `json:"object"`
			Assertions []assertion `json:"assertions"`
		} `json:"cases"`
	} `json:"tests"`
}

// assertion is gator's Assertion: violations is a count, "yes" (at least
// one, the default) or "no"; message, a regular expression, restricts the
// count to the violations whose message it matches.
type assertion struct {
	Violations *intstr.IntOrString `json:"violations,omitempty"`
	Message    *string             `json:"message,omitempty"`
}

// check applies the assertion as gator's Assertion.Run does.
func (a assertion) check(results []*types.Result) error {
	var re *regexp.Regexp
	if a.Message != nil {
		var err error
		if re, err = regexp.Compile(*a.Message); err != nil {
			return fmt.Errorf("message %q: %w", *a.Message, err)
		}
	}
	n := 0
	for _, r := range results {
		if re == nil || re.MatchString(r.Msg) {
			n++
		}
	}
	what := "violations"
	if a.Message != nil {
		what = fmt.Sprintf("violations matching %q", *a.Message)
	}
	v := intstr.FromString("yes")
	if a.Violations != nil {
		v = *a.Violations
	}
	switch {
	case v.Type == intstr.Int && n != v.IntValue():
		return fmt.Errorf("got %d %s, want exactly %d", n, what, v.IntValue())
	case v.Type == intstr.String && v.StrVal == "yes" && n == 0:
		return fmt.Errorf("got no %s, want at least one", what)
	case v.Type == intstr.String && v.StrVal == "no" && n > 0:
		return fmt.Errorf("got %d %s, want none", n, what)
	case v.Type == intstr.String && v.StrVal != "yes" && v.StrVal != "no":
		return fmt.Errorf("violations: %q, want a count, yes or no", v.StrVal)
	}
	return nil
}

// rules are the template directories under library/.
var rules = []string{"naming", "pinning", "registry", "age", "freshness", "signature", "attestation"}

// TestSuites is the suite runner (gator verify has no external data): every
// library/<rule>/suite.yaml, with its template, constraints and samples,
// through the frameworks constraint client with the rego driver and
// external data on, against a real imagegate (mTLS) and a real registry.
// The samples' placeholders (REGISTRY, DIGEST_*) become the test registry's
// host and the pushed images' digests. Every suite runs twice on one client:
// cold (imagegate asked; status_code 200) and warm (every key from
// Gatekeeper's response cache; status_code 0), and must give the same
// violations. For the warm pass the Provider points at a closed port, so a
// key that was not cached would show as a failed request.
func TestSuites(t *testing.T) {
	w := newWorld(t)
	ig := startImagegate(t, w, nil)
	c, pc := newGatekeeper(t, gatekeeperOptions{
		providers:  []*unversioned.Provider{ig.provider(t, "imagegate-facts")},
		clientCert: ig.bundle,
	})
	for _, rule := range rules {
		addTemplate(t, c, rule)
	}
	for _, pass := range []string{"cold", "warm"} {
		if pass == "warm" {
			down := ig.provider(t, "imagegate-facts")
			down.Spec.URL = closedURL(t, "/v1/externaldata/facts")
			if err := pc.Upsert(down); err != nil {
				t.Fatal(err)
			}
		}
		for _, rule := range rules {
			t.Run(pass+"/"+rule, func(t *testing.T) { runSuite(t, c, w, rule) })
		}
	}
}

func runSuite(t *testing.T, c *constraintclient.Client, w *world, rule string) {
	dir := filepath.Join("library", rule)
	s, err := readSuite(readFile(t, filepath.Join(dir, "suite.yaml")))
	if err != nil {
		t.Fatalf("suite.yaml: %v", err)
	}
	if s.Kind != "Suite" || s.APIVersion != "test.gatekeeper.sh/v1alpha1" {
		t.Fatalf("suite.yaml is %s %s, want test.gatekeeper.sh/v1alpha1 Suite", s.APIVersion, s.Kind)
	}
	if len(s.Tests) == 0 {
		t.Fatal("suite.yaml has no tests")
	}
	for _, test := range s.Tests {
		t.Run(test.Name, func(t *testing.T) {
			if test.Template != "template.yaml" {
				t.Fatalf("template: %q, want template.yaml", test.Template)
			}
			cstr := w.object(t, filepath.Join(dir, test.Constraint))
			if _, err := c.AddConstraint(t.Context(), cstr); err != nil {
				t.Fatalf("AddConstraint(%s): %v", test.Constraint, err)
			}
			t.Cleanup(func() {
				if _, err := c.RemoveConstraint(t.Context(), cstr); err != nil {
					t.Errorf("RemoveConstraint: %v", err)
				}
			})
			if len(test.Cases) == 0 {
				t.Fatal("no cases")
			}
			for _, tc := range test.Cases {
				t.Run(tc.Name, func(t *testing.T) {
					results := review(t, c, w.object(t, filepath.Join(dir, tc.Object)))
					// Exact, not "at least": every case pins the total.
					total := false
					for _, a := range tc.Assertions {
						if a.Message == nil && a.Violations != nil && (a.Violations.Type == intstr.Int || a.Violations.StrVal == "no") {
							total = true
						}
					}
					if !total {
						t.Error("no assertion on the total number of violations (violations: <n> or no, without message)")
					}
					for _, a := range tc.Assertions {
						if err := a.check(results); err != nil {
							t.Errorf("%s: %v; messages:\n%s", tc.Object, err, bulleted(messages(results)))
						}
					}
					for _, r := range results {
						if r.EnforcementAction != "deny" {
							t.Errorf("result %q: enforcementAction %q, want deny", r.Msg, r.EnforcementAction)
						}
					}
				})
			}
		})
	}
}

// readSuite parses suite.yaml as gator does, as YAML 1.2 (go.yaml.in/yaml/v3):
// `violations: no` is the string "no", not YAML 1.1's false. Unknown
// fields are errors.
func readSuite(b []byte) (*suite, error) {
	var v any
	if err := yaml3.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var s suite
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

func bulleted(msgs []string) string {
	out := ""
	for _, m := range msgs {
		out += "  - " + m + "\n"
	}
	if out == "" {
		return "  (none)\n"
	}
	return out
}
