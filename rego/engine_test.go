package rego_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/rego"
)

// noFacts fails the test if policy asks for facts.
type noFacts struct{ t *testing.T }

func (n noFacts) Facts(_ context.Context, key string) (*facts.Facts, error) {
	n.t.Errorf("policy asked for facts of %q; this policy needs none", key)
	return nil, errors.New("unexpected")
}

func review(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func newEngine(t *testing.T, o rego.Options) *rego.Engine {
	t.Helper()
	e, err := rego.New(t.Context(), o)
	if err != nil {
		t.Fatalf("rego.New() error = %v", err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// TestImageEnforcerUnmodified runs a v0 OPA image_enforcer-style policy with
// its own query and data, as such users would configure it.
func TestImageEnforcerUnmodified(t *testing.T) {
	e := newEngine(t, rego.Options{Dir: "../examples/image-enforcer/policy", V0: true, Query: "data.io.k8s.image_policy.verify"})
	for _, tc := range []struct {
		file    string
		allowed bool
		reason  string
	}{
		{file: "allowed.json", allowed: true},
		{file: "denied.json", allowed: false, reason: "image library/wordpress:4-apache is not from a trusted repository"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			res, err := e.Decide(t.Context(), review(t, filepath.Join("../examples/image-enforcer", tc.file)), noFacts{t})
			if err != nil {
				t.Fatal(err)
			}
			st := res.(map[string]any)["status"].(map[string]any)
			if st["allowed"] != tc.allowed || !strings.Contains(st["reason"].(string), tc.reason) {
				t.Errorf("status = %v, want allowed %v reason containing %q", st, tc.allowed, tc.reason)
			}
		})
	}
}

const goodPolicy = `package custom

decision := {"allowed": allowed, "reason": "v1"}

default allowed := false

allowed if input.spec.namespace == "ok"
`

// TestPolicyDirReload: an edit is picked up; a broken edit keeps the last
// good policy serving and is reported with file:line; a policy that calls
// http.send is refused.
func TestPolicyDirReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("policy.rego", goodPolicy)
	var mu sync.Mutex
	var reloads []error
	e := newEngine(t, rego.Options{Dir: dir, Query: "data.custom.decision", PollInterval: time.Hour, OnReload: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reloads = append(reloads, err)
	}})
	in := map[string]any{"spec": map[string]any{"namespace": "ok"}}
	decide := func() map[string]any {
		t.Helper()
		res, err := e.Decide(t.Context(), in, noFacts{t})
		if err != nil {
			t.Fatal(err)
		}
		return res.(map[string]any)
	}
	if got := decide()["reason"]; got != "v1" {
		t.Fatalf("reason = %v, want v1", got)
	}

	write("policy.rego", strings.Replace(goodPolicy, `"v1"`, `"v2"`, 1))
	bump(t, filepath.Join(dir, "policy.rego"))
	e.Reload(t.Context())
	if got := decide()["reason"]; got != "v2" || e.Status() != nil {
		t.Fatalf("after an edit: reason = %v, status %v; want v2 and no error", got, e.Status())
	}

	write("policy.rego", goodPolicy+"\nbroken if {\n")
	bump(t, filepath.Join(dir, "policy.rego"))
	e.Reload(t.Context())
	if got := decide()["reason"]; got != "v2" {
		t.Errorf("after a broken edit: reason = %v, want the last good policy (v2)", got)
	}
	if err := e.Status(); err == nil || !strings.Contains(err.Error(), "policy.rego:") {
		t.Errorf("Status() = %v, want an error naming policy.rego:<line>", err)
	}

	write("policy.rego", goodPolicy+"\nleak := http.send({\"method\": \"GET\", \"url\": \"http://169.254.169.254/\"})\n")
	bump(t, filepath.Join(dir, "policy.rego"))
	e.Reload(t.Context())
	if err := e.Status(); err == nil || !strings.Contains(err.Error(), "http.send") {
		t.Errorf("Status() = %v, want http.send refused", err)
	}

	write("policy.rego", goodPolicy)
	bump(t, filepath.Join(dir, "policy.rego"))
	e.Reload(t.Context())
	if got := decide()["reason"]; got != "v1" || e.Status() != nil {
		t.Errorf("after fixing: reason = %v, status %v; want v1 and no error", got, e.Status())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reloads) != 4 || reloads[0] != nil || reloads[1] == nil || reloads[2] == nil || reloads[3] != nil {
		t.Errorf("OnReload calls = %v, want ok, error, error, ok", reloads)
	}
}

func bump(t *testing.T, path string) {
	t.Helper()
	later := time.Now().Add(time.Duration(len(path)) * time.Millisecond)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadPolicy(t *testing.T) {
	for _, tc := range []struct {
		desc, src, want string
	}{
		{desc: "syntax", src: "package p\nallow if {", want: "policy.rego:2"},
		{desc: "http.send", src: "package p\nx := http.send({})\n", want: "http.send"},
		{desc: "net.lookup_ip_addr", src: "package p\nx := net.lookup_ip_addr(\"a\")\n", want: "net.lookup_ip_addr"},
		{desc: "opa.runtime", src: "package p\nx := opa.runtime()\n", want: "opa.runtime"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(tc.src), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := rego.New(t.Context(), rego.Options{Dir: dir, Query: "data.p.x"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rego.New() error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := rego.New(t.Context(), rego.Options{Query: "input.x"}); err == nil {
		t.Error("rego.New() with a non-data query succeeded")
	}
}

// TestConcurrentDecisions evaluates decisions from many goroutines at once,
// with a policy whose rules carry METADATA labels, while the policy is
// reloaded: under -race this catches shared state written by evaluations
// (sdk.Decision has such state: the evaluated-rule tracker of the first
// call is kept in its cached prepared query, which is why the engine
// evaluates its own prepared query).
func TestConcurrentDecisions(t *testing.T) {
	dir := t.TempDir()
	policy := func(reason string) string {
		return `package imagegate.review

# METADATA
# custom:
#   labels:
#     team: platform
decision := {"allowed": true, "reason": "` + reason + `"} if {
	some c in input.spec.containers
	startswith(c.image, "ghcr.io/")
}
`
	}
	writeFile(t, filepath.Join(dir, "p.rego"), policy("one"))
	e, err := rego.New(t.Context(), rego.Options{Dir: dir, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	input := map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": "ghcr.io/acme/app:1"}}}}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				res, err := e.Decide(context.Background(), input, nil)
				if err != nil {
					errs <- err
					return
				}
				if r := res.(map[string]any)["reason"]; r != "one" && r != "two" {
					errs <- fmt.Errorf("reason %v, want one or two", r)
					return
				}
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	writeFile(t, filepath.Join(dir, "p.rego"), policy("two"))
	e.Reload(t.Context())
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := e.Status(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	res, err := e.Decide(context.Background(), input, nil)
	if err != nil || res.(map[string]any)["reason"] != "two" {
		t.Errorf("after the reload: %v, %v; want reason two", res, err)
	}
}

// TestDecideGoTypedInput: Decide converts its input itself (not through
// EvalInput's JSON round trip), so Go-typed input must still reach policy as
// the JSON it encodes to: structs by their json tags, []string and
// map[string]string, integers. The bundled policy denies nginx:latest with
// the same reasons whichever way the review is spelled, and reads the
// namespace's break-glass annotation from a map[string]string.
func TestDecideGoTypedInput(t *testing.T) {
	e, err := rego.New(t.Context(), rego.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	type container struct {
		Image string `json:"image"`
	}
	type spec struct {
		Containers  []container       `json:"containers"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Generation  int32             `json:"generation"`
	}
	typed := struct {
		Spec spec `json:"spec"`
	}{spec{Containers: []container{{Image: "nginx:latest"}}, Namespace: "prod", Generation: 3}}
	generic := map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": "nginx:latest"}}, "namespace": "prod", "generation": 3.0}}
	want, err := e.Decide(t.Context(), generic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want.(map[string]any)["allowed"] != false {
		t.Fatalf("generic input: %v, want a denial", want)
	}
	got, err := e.Decide(t.Context(), typed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("typed input decided %v, generic %v", got, want)
	}
	withStrings := map[string]any{"spec": map[string]any{"containers": []map[string]string{{"image": "nginx:latest"}}, "namespace": "prod", "annotations": map[string]string{"alpha.image-policy.k8s.io/break-glass": "true"}}}
	got, err = e.Decide(t.Context(), withStrings, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := got.(map[string]any)["reason"].(string); !strings.Contains(r, "break-glass annotation") || !strings.Contains(r, "nginx:latest") {
		t.Errorf("[]map[string]string containers and map[string]string annotations: %v, want the denial noting the break-glass annotation", got)
	}
}
