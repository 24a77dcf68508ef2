package registry

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

type opRecorder struct{ ops []string }

func (r *opRecorder) ObserveRegistryRequest(op, result string, _ time.Duration) {
	r.ops = append(r.ops, op+" "+result)
}

func TestLimitTransport(t *testing.T) {
	// /v2/<path>?n=<bytes>&chunked=1 answers n bytes, with or without a
	// Content-Length.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		body := strings.Repeat("x", n)
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		} else {
			w.(http.Flusher).Flush() // no Content-Length from here on
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	limits := Limits{ManifestBytes: 100, ConfigBytes: 200}
	for _, tc := range []struct {
		desc    string
		method  string
		path    string
		n       int
		chunked bool
		wantOp  string
		wantErr bool
	}{
		{desc: "manifest under the limit", path: "/v2/a/manifests/v1", n: 99, wantOp: "manifest_get 200"},
		{desc: "manifest at the limit", path: "/v2/a/manifests/v1", n: 100, wantOp: "manifest_get 200"},
		{desc: "manifest over the limit, announced", path: "/v2/a/manifests/v1", n: 101, wantOp: "manifest_get 200", wantErr: true},
		{desc: "manifest at the limit, chunked", path: "/v2/a/manifests/v1", n: 100, chunked: true, wantOp: "manifest_get 200"},
		{desc: "manifest over the limit, chunked", path: "/v2/a/manifests/v1", n: 101, chunked: true, wantOp: "manifest_get 200", wantErr: true},
		{desc: "manifest head over the limit", method: http.MethodHead, path: "/v2/a/manifests/v1", n: 101, wantOp: "manifest_head 200", wantErr: true},
		{desc: "manifest head at the limit", method: http.MethodHead, path: "/v2/a/manifests/v1", n: 100, wantOp: "manifest_head 200"},
		{desc: "blob under the config limit", path: "/v2/a/blobs/sha256:x", n: 200, wantOp: "blob_get 200"},
		{desc: "blob over the config limit, chunked", path: "/v2/a/blobs/sha256:x", n: 201, chunked: true, wantOp: "blob_get 200", wantErr: true},
		{desc: "referrers", path: "/v2/a/referrers/sha256:x", n: 101, wantOp: "referrers 200", wantErr: true},
		{desc: "tags", path: "/v2/a/tags/list", n: 10, wantOp: "tags 200"},
		{desc: "ping", path: "/v2/", n: 10, wantOp: "ping 200"},
		{desc: "other v2 path", path: "/v2/_catalog", n: 10, wantOp: "other 200"},
		{desc: "token", path: "/token", n: 1 << 20, chunked: true, wantOp: "token 200"},
		{desc: "token over the limit", path: "/token", n: 1<<20 + 1, chunked: true, wantOp: "token 200", wantErr: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			rec := &opRecorder{}
			rt := &limitTransport{next: http.DefaultTransport, limits: limits, observer: rec}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			u := srv.URL + tc.path + "?n=" + strconv.Itoa(tc.n)
			if tc.chunked {
				u += "&chunked=1"
			}
			req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := rt.RoundTrip(req)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if tc.wantErr {
				if !errors.Is(err, errTooLarge) {
					t.Errorf("%s %s (%d bytes): error = %v, want errTooLarge", method, tc.path, tc.n, err)
				}
				if classify(err) != "invalid_content" {
					t.Errorf("classify(%v) = %s, want invalid_content", err, classify(err))
				}
			} else {
				if err != nil {
					t.Fatalf("%s %s (%d bytes): error = %v, want none", method, tc.path, tc.n, err)
				}
				if method == http.MethodGet && len(got) != tc.n {
					t.Errorf("%s %s: read %d bytes, want %d", method, tc.path, len(got), tc.n)
				}
			}
			if len(rec.ops) != 1 || rec.ops[0] != tc.wantOp {
				t.Errorf("%s %s observed %v, want [%s]", method, tc.path, rec.ops, tc.wantOp)
			}
		})
	}
}
