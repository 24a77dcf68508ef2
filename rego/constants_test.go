package rego_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagegate/imagegate/rego"
)

// constantPolicy marks limits constant: it reads data only (data.json of
// the policy directory, through a helper rule and a function).
const constantPolicy = `package custom

# METADATA
# custom:
#   constant: true
limits := {name: scaled(n) | some name, n in base}

base := data.limits

scaled(n) := n * 10

decision := {"allowed": true, "reason": sprintf("%v", [limits[input.spec.namespace]])}
`

// TestConstantRules: a rule marked constant is served with the value it
// had when the policy was loaded, computed again when the policy
// directory's data changes; a rule that cannot be constant (it reads input,
// calls a nondeterministic builtin, or is a function) is refused with the
// rule and the cause named.
func TestConstantRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		bump(t, filepath.Join(dir, name))
	}
	write("policy.rego", constantPolicy)
	write("data.json", `{"limits": {"prod": 1}}`)
	e := newEngine(t, rego.Options{Dir: dir, Query: "data.custom.decision", PollInterval: time.Hour})
	reason := func() any {
		t.Helper()
		res, err := e.Decide(t.Context(), map[string]any{"spec": map[string]any{"namespace": "prod"}}, noFacts{t})
		if err != nil {
			t.Fatal(err)
		}
		return res.(map[string]any)["reason"]
	}
	if got := reason(); got != "10" {
		t.Fatalf("reason = %v, want 10", got)
	}
	write("data.json", `{"limits": {"prod": 2}}`)
	e.Reload(t.Context())
	if got := reason(); got != "20" || e.Status() != nil {
		t.Fatalf("after the data changed: reason = %v, status %v; want 20 and no error", got, e.Status())
	}

	for _, tc := range []struct {
		desc, rule string
		want       []string
	}{
		{desc: "input", rule: "limits := {input.spec.namespace: 1}", want: []string{"data.custom.limits", "depends on input"}},
		{desc: "input through a rule", rule: "limits := ns\n\nns := input.spec.namespace", want: []string{"data.custom.limits", "depends on input", "data.custom.ns"}},
		{desc: "time", rule: "limits := {\"prod\": time.now_ns()}", want: []string{"data.custom.limits", "time.now_ns"}},
		{desc: "input in an else branch, through a function", rule: "limits := 1 if {\n\tfalse\n} else := f(2)\n\nf(_) := input.y", want: []string{"data.custom.limits", "depends on input", "input.y", "data.custom.f"}},
		{desc: "facts", rule: "limits := imagegate.facts([\"registry.example/app:v1\"])", want: []string{"data.custom.limits", "imagegate.facts"}},
		{desc: "function", rule: "limits(x) := x", want: []string{"data.custom.limits", "not a plain rule"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			d := t.TempDir()
			src := "package custom\n\n# METADATA\n# custom:\n#   constant: true\n" + tc.rule + "\n\ndecision := {\"allowed\": true}\n"
			if err := os.WriteFile(filepath.Join(d, "policy.rego"), []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := rego.New(t.Context(), rego.Options{Dir: d, Query: "data.custom.decision"})
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("rego.New() error = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}
