package gatekeeper_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/unversioned"

	"github.com/imagegate/imagegate/server/config"
)

// TestFailClosed: whenever imagegate could not look at an image, the facts
// templates report that image as a violation that names it and the cause;
// nothing is admitted because nothing was found. Each case runs the age
// template (the same external-data plumbing as freshness, signature and
// attestation) with its sample constraint against a fresh imagegate and a
// fresh Gatekeeper client (empty response cache).
func TestFailClosed(t *testing.T) {
	w := newWorld(t)
	pod := func(images ...string) []byte {
		b := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: default\nspec:\n  containers:\n"
		for i, img := range images {
			b += fmt.Sprintf("  - name: c%d\n    image: %s\n", i, img)
		}
		return []byte(b)
	}
	twoImages := pod("REGISTRY/acme/signed:1.0", "REGISTRY/acme/unsigned:1.0")
	imageRE := `age: image "[^"]+/acme/(un)?signed:1\.0" could not be checked: `

	for _, tc := range []struct {
		desc     string
		config   func(*config.Config)
		provider func(*testing.T, *unversioned.Provider)
		delay    time.Duration // registry answers this late
		noCert   bool          // Gatekeeper presents no client certificate
		object   []byte
		want     int
		wantMsg  string // every violation matches it
	}{
		{
			desc: "imagegate down",
			provider: func(t *testing.T, p *unversioned.Provider) {
				p.Spec.URL = closedURL(t, "/v1/externaldata/facts")
			},
			object:  twoImages,
			want:    2,
			wantMsg: imageRE + `the imagegate-facts request failed \(HTTP 500\): failed to send external data request: Post "https://127\.0\.0\.1:[0-9]+/v1/externaldata/facts": .*connection refused; admission fails closed until imagegate answers$`,
		},
		{
			desc: "slow past the Provider timeout",
			provider: func(_ *testing.T, p *unversioned.Provider) {
				p.Spec.Timeout = 1
			},
			delay:   2 * time.Second,
			object:  twoImages,
			want:    2,
			wantMsg: imageRE + `the imagegate-facts request failed \(HTTP 500\): failed to send external data request: .*(deadline exceeded|Timeout exceeded)`,
		},
		{
			desc:    "systemError when the budget runs out",
			config:  func(c *config.Config) { c.Budget = config.Duration(300 * time.Millisecond) },
			delay:   1500 * time.Millisecond,
			object:  twoImages,
			want:    2,
			wantMsg: imageRE + `the imagegate-facts request failed \(HTTP 200\): unavailable: 2 of 2 keys could not be looked up now \(transient, not cached; retry\): `,
		},
		{
			desc:    "HTTP 400",
			config:  func(c *config.Config) { c.Limits.MaxKeys = 1 },
			object:  twoImages,
			want:    2,
			wantMsg: imageRE + `the imagegate-facts request failed \(HTTP 400\): bad_request: 2 keys, more than the limit of 1;`,
		},
		{
			desc:    "no client certificate",
			noCert:  true,
			object:  twoImages,
			want:    2,
			wantMsg: imageRE + `the imagegate-facts request failed \(HTTP 403\): forbidden: a client certificate signed by imagegate's tls.clientCAFile is required`,
		},
		{
			desc:    "per-key error",
			object:  pod("REGISTRY/acme/signed:1.0", "evil.example/acme/app:1.0"),
			want:    1,
			wantMsg: `^age: image "evil\.example/acme/app:1\.0" could not be checked: imagegate-facts: registry_not_allowed: `,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ig := startImagegate(t, w, tc.config)
			p := ig.provider(t, "imagegate-facts")
			if tc.provider != nil {
				tc.provider(t, p)
			}
			o := gatekeeperOptions{providers: []*unversioned.Provider{p}, clientCert: ig.bundle}
			if tc.noCert {
				o.clientCert = nil
			}
			c, _ := newGatekeeper(t, o)
			addTemplate(t, c, "age")
			if _, err := c.AddConstraint(t.Context(), w.object(t, filepath.Join("library", "age", "samples", "max-age", "constraint.yaml"))); err != nil {
				t.Fatal(err)
			}
			if tc.delay > 0 {
				w.reg.Delay(tc.delay, nil)
				t.Cleanup(func() { w.reg.Delay(0, nil) })
			}
			start := time.Now()
			results := review(t, c, w.objectFrom(t, tc.desc, tc.object))
			took := time.Since(start)
			msgs := messages(results)
			if len(results) != tc.want {
				t.Fatalf("got %d violations, want %d:\n%s", len(results), tc.want, bulleted(msgs))
			}
			re := regexp.MustCompile(tc.wantMsg)
			for _, m := range msgs {
				if !re.MatchString(m) {
					t.Errorf("violation %q\ndoes not match %q", m, tc.wantMsg)
				}
			}
			if tc.want == 2 && (!regexp.MustCompile(`/acme/signed:1\.0"`).MatchString(msgs[0]+msgs[1]) || !regexp.MustCompile(`/acme/unsigned:1\.0"`).MatchString(msgs[0]+msgs[1])) {
				t.Errorf("want one violation per image, got:\n%s", bulleted(msgs))
			}
			if tc.delay > 0 && took > tc.delay {
				t.Errorf("review took %s, want the answer before the registry's %s", took, tc.delay)
			}
		})
	}
}
