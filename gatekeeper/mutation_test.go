package gatekeeper_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/unversioned"
	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// assign is the part of Gatekeeper's Assign (mutations.gatekeeper.sh/v1)
// gatekeeper/mutation uses; decoding is strict, and manifests_test.go checks
// the files against Gatekeeper's own CRD schema.
type assign struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		ApplyTo []struct {
			Groups   []string `json:"groups"`
			Kinds    []string `json:"kinds"`
			Versions []string `json:"versions"`
		} `json:"applyTo"`
		Match      match  `json:"match"`
		Location   string `json:"location"`
		Parameters struct {
			Assign struct {
				ExternalData *externalDataRef `json:"externalData"`
			} `json:"assign"`
		} `json:"parameters"`
	} `json:"spec"`
}

// externalDataRef is Gatekeeper's ExternalData (apis/mutations/unversioned).
type externalDataRef struct {
	Provider      string `json:"provider"`
	DataSource    string `json:"dataSource"`
	FailurePolicy string `json:"failurePolicy"`
	Default       string `json:"default"`
}

func readAssigns(t *testing.T) []assign {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("mutation", "assign-*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no mutation/assign-*.yaml (%v)", err)
	}
	var out []assign
	for _, p := range paths {
		var a assign
		if err := yaml.UnmarshalStrict(readFile(t, p), &a); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, a)
	}
	// Gatekeeper applies mutators in the order of their IDs.
	sort.Slice(out, func(i, j int) bool { return out[i].Metadata.Name < out[j].Metadata.Name })
	return out
}

func (a *assign) appliesTo(obj *unstructured.Unstructured, nsLabels map[string]string) (bool, error) {
	gvk := obj.GroupVersionKind()
	bound := false
	for _, b := range a.Spec.ApplyTo {
		if anyMatch(b.Groups, gvk.Group) && anyMatch(b.Kinds, gvk.Kind) && anyMatch(b.Versions, gvk.Version) {
			bound = true
		}
	}
	if !bound {
		return false, nil
	}
	return a.Spec.Match.matches(obj, nsLabels)
}

// placeholder is a value waiting for external data, like Gatekeeper's
// ExternalDataPlaceholder: where it goes and the value found there.
type placeholder struct {
	parent map[string]any
	field  string
	ref    *externalDataRef
	key    string // ValueAtLocation
}

// locate returns the string fields at an Assign location such as
// spec.template.spec.containers[name:*].image.
func locate(obj map[string]any, location string) ([]placeholder, error) {
	segs := strings.Split(location, ".")
	nodes := []map[string]any{obj}
	for i, seg := range segs {
		last := i == len(segs)-1
		var next []map[string]any
		for _, n := range nodes {
			if key, ok := strings.CutSuffix(seg, "[name:*]"); ok {
				list, _ := n[key].([]any)
				for _, e := range list {
					if m, ok := e.(map[string]any); ok {
						next = append(next, m)
					}
				}
				continue
			}
			if strings.ContainsAny(seg, "[]:*") {
				return nil, fmt.Errorf("location %q: segment %q is not supported here", location, seg)
			}
			if last {
				continue
			}
			if m, ok := n[seg].(map[string]any); ok {
				next = append(next, m)
			}
		}
		if last {
			var out []placeholder
			for _, n := range nodes {
				if v, ok := n[seg].(string); ok {
					out = append(out, placeholder{parent: n, field: seg, key: v})
				}
			}
			return out, nil
		}
		nodes = next
	}
	return nil, nil
}

// mutate applies the Assigns to obj as Gatekeeper's mutation system does with
// external data (pkg/mutation: System.Mutate, resolvePlaceholders,
// sendRequests, mutateWithExternalData, v3.23.1): every matching Assign marks
// the values at its location; the marked values are sent, de-duplicated, in
// one request per provider, with externaldata.DefaultSendRequestToProvider
// (the function Gatekeeper calls) under the Provider's timeout; a response
// with a systemError or not idempotent fails the provider; then each value is
// replaced by its item's string value, and a per-key error, a missing item,
// a value that is not a string or a failed provider goes to the Assign's
// failurePolicy: Fail (the object is refused), Ignore (kept as written) or
// UseDefault (default). On Fail obj is left untouched.
func mutate(ctx context.Context, obj *unstructured.Unstructured, nsLabels map[string]string, assigns []assign, providers map[string]*unversioned.Provider, cert *tls.Certificate) error {
	work := obj.DeepCopy()
	var marks []placeholder
	for i := range assigns {
		a := &assigns[i]
		ok, err := a.appliesTo(work, nsLabels)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		ed := a.Spec.Parameters.Assign.ExternalData
		if ed == nil || ed.DataSource != "ValueAtLocation" {
			return fmt.Errorf("assign %s: want externalData with dataSource ValueAtLocation", a.Metadata.Name)
		}
		found, err := locate(work.Object, a.Spec.Location)
		if err != nil {
			return err
		}
		for _, p := range found {
			p.ref = ed
			marks = append(marks, p)
		}
	}
	if len(marks) == 0 {
		return nil
	}

	keys := map[string]map[string]bool{}
	for _, m := range marks {
		if keys[m.ref.Provider] == nil {
			keys[m.ref.Provider] = map[string]bool{}
		}
		keys[m.ref.Provider][m.key] = true
	}
	items := map[string]map[string]externaldata.Item{}
	failed := map[string]error{}
	for name, set := range keys {
		p, ok := providers[name]
		if !ok {
			failed[name] = fmt.Errorf("provider %s not found", name)
			continue
		}
		var list []string
		for k := range set {
			list = append(list, k)
		}
		sort.Strings(list)
		rctx, cancel := context.WithTimeout(ctx, time.Duration(p.Spec.Timeout)*time.Second)
		resp, _, err := externaldata.DefaultSendRequestToProvider(rctx, p, list, cert)
		cancel()
		switch {
		case err != nil:
			failed[name] = fmt.Errorf("failed to send external data request to provider %s: %w", name, err)
		case strings.TrimSpace(resp.Response.SystemError) != "":
			failed[name] = fmt.Errorf("failed to validate external data response from provider %s: non-empty system error: %s", name, resp.Response.SystemError)
		case !resp.Response.Idempotent:
			failed[name] = fmt.Errorf("failed to validate external data response from provider %s: non-idempotent response", name)
		default:
			items[name] = map[string]externaldata.Item{}
			for _, it := range resp.Response.Items {
				items[name][it.Key] = it
			}
		}
	}

	var errs []error
	for _, m := range marks {
		err := failed[m.ref.Provider]
		var value string
		if err == nil {
			it, ok := items[m.ref.Provider][m.key]
			switch {
			case !ok:
				err = fmt.Errorf("failed to find external data item in response for provider %s", m.ref.Provider)
			case it.Error != "":
				err = fmt.Errorf("failed to retrieve external data item from provider %s: %s", m.ref.Provider, it.Error)
			default:
				var isString bool
				if value, isString = it.Value.(string); !isString {
					err = fmt.Errorf("failed to convert external data item value from provider %s to string, got type %T", m.ref.Provider, it.Value)
				}
			}
		}
		if err != nil {
			switch m.ref.FailurePolicy {
			case "Ignore":
				value = m.key
			case "UseDefault":
				value = m.ref.Default
			default: // Fail, Gatekeeper's default
				errs = append(errs, fmt.Errorf("%q: %w", m.key, err))
				continue
			}
		}
		m.parent[m.field] = value
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	obj.Object = work.Object
	return nil
}

// TestMutation applies gatekeeper/mutation's Assigns against the real
// imagegate-digest provider. Gatekeeper's mutation system is not in the
// frameworks module, so mutate above reproduces its external-data path
// around the frameworks call Gatekeeper makes.
func TestMutation(t *testing.T) {
	w := newWorld(t)
	ig := startImagegate(t, w, nil)
	cert, err := tls.LoadX509KeyPair(ig.bundle.ClientCertFile, ig.bundle.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	digest := ig.provider(t, "imagegate-digest")
	providers := map[string]*unversioned.Provider{"imagegate-digest": digest}
	assigns := readAssigns(t)
	if len(assigns) != 7 {
		t.Fatalf("%d Assigns, want 7 (containers, initContainers, ephemeralContainers of Pods; containers and initContainers of workloads and CronJobs)", len(assigns))
	}

	withPolicy := func(policy, def string) []assign {
		out := make([]assign, len(assigns))
		for i, a := range assigns {
			ed := *a.Spec.Parameters.Assign.ExternalData
			ed.FailurePolicy, ed.Default = policy, def
			a.Spec.Parameters.Assign.ExternalData = &ed
			out[i] = a
		}
		return out
	}
	pinned := func(repo string) string {
		return w.image("REGISTRY/acme/" + repo + ":1.0@" + w.values["DIGEST_"+strings.ToUpper(repo)])
	}

	for _, tc := range []struct {
		desc     string
		object   string
		nsLabels map[string]string
		assigns  []assign
		down     bool
		want     map[string]string // container name → image after mutation
		wantErr  string
	}{
		{
			desc: "Pod: containers, init and ephemeral containers",
			object: `apiVersion: v1
kind: Pod
metadata: {name: app, namespace: default}
spec:
  containers:
  - {name: app, image: REGISTRY/acme/signed:1.0}
  - {name: pinned, image: REGISTRY/acme/moved:1.0@DIGEST_MOVED_OLD}
  - {name: same, image: REGISTRY/acme/signed:1.0}
  initContainers:
  - {name: init, image: REGISTRY/acme/unsigned:1.0}
  ephemeralContainers:
  - {name: debug, image: REGISTRY/acme/old:1.0}
`,
			want: map[string]string{
				"app":    pinned("signed"),
				"same":   pinned("signed"),
				"pinned": w.image("REGISTRY/acme/moved:1.0@DIGEST_MOVED_OLD"), // a digest key stays as pinned
				"init":   pinned("unsigned"),
				"debug":  pinned("old"),
			},
		},
		{
			desc: "Deployment pod template: multi-arch index and a moved tag",
			object: `apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: default}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
      - {name: app, image: REGISTRY/acme/multiarch:1.0}
      initContainers:
      - {name: init, image: REGISTRY/acme/moved:1.0}
`,
			want: map[string]string{"app": pinned("multiarch"), "init": w.image("REGISTRY/acme/moved:1.0@DIGEST_MOVED_NEW")},
		},
		{
			desc: "CronJob job template",
			object: `apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: default}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - {name: report, image: REGISTRY/acme/signed:1.0}
`,
			want: map[string]string{"report": pinned("signed")},
		},
		{
			desc: "object labelled imagegate.dev/mutate: false is left alone",
			object: `apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: default, labels: {imagegate.dev/mutate: "false"}}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
      - {name: app, image: REGISTRY/acme/signed:1.0}
`,
			down: true, // not even asked
			want: map[string]string{"app": w.image("REGISTRY/acme/signed:1.0")},
		},
		{
			desc: "namespace labelled imagegate.dev/mutate: false is left alone",
			object: `apiVersion: v1
kind: Pod
metadata: {name: app, namespace: gitops}
spec:
  containers:
  - {name: app, image: REGISTRY/acme/signed:1.0}
`,
			nsLabels: map[string]string{"imagegate.dev/mutate": "false"},
			down:     true,
			want:     map[string]string{"app": w.image("REGISTRY/acme/signed:1.0")},
		},
		{
			desc: "imagegate-system is never mutated",
			object: `apiVersion: v1
kind: Pod
metadata: {name: imagegate, namespace: imagegate-system}
spec:
  containers:
  - {name: imagegate, image: REGISTRY/acme/signed:1.0}
`,
			down: true,
			want: map[string]string{"imagegate": w.image("REGISTRY/acme/signed:1.0")},
		},
		{
			desc:    "missing image, failurePolicy Fail: refused, nothing changed",
			object:  missingPod,
			wantErr: `"` + w.image("REGISTRY/acme/missing:1.0") + `": failed to retrieve external data item from provider imagegate-digest: not_found: `,
			want:    map[string]string{"app": w.image("REGISTRY/acme/signed:1.0"), "missing": w.image("REGISTRY/acme/missing:1.0")},
		},
		{
			desc:    "missing image, failurePolicy Ignore: kept as written",
			object:  missingPod,
			assigns: withPolicy("Ignore", ""),
			want:    map[string]string{"app": pinned("signed"), "missing": w.image("REGISTRY/acme/missing:1.0")},
		},
		{
			desc:    "missing image, failurePolicy UseDefault",
			object:  missingPod,
			assigns: withPolicy("UseDefault", "registry.example/quarantine:blocked"),
			want:    map[string]string{"app": pinned("signed"), "missing": "registry.example/quarantine:blocked"},
		},
		{
			desc:    "imagegate down, failurePolicy Fail: refused",
			object:  missingPod,
			down:    true,
			wantErr: "failed to send external data request to provider imagegate-digest: ",
			want:    map[string]string{"app": w.image("REGISTRY/acme/signed:1.0"), "missing": w.image("REGISTRY/acme/missing:1.0")},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			as := tc.assigns
			if as == nil {
				as = assigns
			}
			ps := providers
			if tc.down {
				p := *digest
				p.Spec.URL = closedURL(t, "/v1/externaldata/digest")
				ps = map[string]*unversioned.Provider{"imagegate-digest": &p}
			}
			obj := w.objectFrom(t, tc.desc, []byte(tc.object))
			err := mutate(t.Context(), obj, tc.nsLabels, as, ps, &cert)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("mutate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("mutate error = %v, want one containing %q", err, tc.wantErr)
			}
			if got := images(obj); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("images after mutation:\n got %v\nwant %v", got, tc.want)
			}
			if err != nil {
				return
			}
			// Gatekeeper requires mutations to converge: a second pass over
			// the result changes nothing.
			again := obj.DeepCopy()
			if err := mutate(t.Context(), again, tc.nsLabels, as, ps, &cert); err != nil {
				t.Fatalf("second pass: %v", err)
			}
			if !reflect.DeepEqual(again.Object, obj.Object) {
				t.Errorf("second pass changed the object: %v", images(again))
			}
		})
	}
}

const missingPod = `apiVersion: v1
kind: Pod
metadata: {name: app, namespace: default}
spec:
  containers:
  - {name: app, image: REGISTRY/acme/signed:1.0}
  - {name: missing, image: REGISTRY/acme/missing:1.0}
`

// images maps container names to images, over every container list of a
// Pod, a workload pod template or a CronJob.
func images(obj *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for _, loc := range []string{
		"spec", "spec.template.spec", "spec.jobTemplate.spec.template.spec",
	} {
		for _, field := range []string{"containers", "initContainers", "ephemeralContainers"} {
			found, _ := locate(obj.Object, loc+"."+field+"[name:*].name")
			for _, p := range found {
				out[p.key] = p.parent["image"].(string)
			}
		}
	}
	return out
}
