package server

import (
	"errors"
	"os"
	"testing"
)

// FuzzDecodeProviderRequest: any body either decodes into a valid request
// within the limits or fails with a bad_request error; it never panics.
func FuzzDecodeProviderRequest(f *testing.F) {
	if b, err := os.ReadFile("testdata/provider-request.json"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		`{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{"keys":["nginx","ghcr.io/a/b:1@sha256:` + "0000000000000000000000000000000000000000000000000000000000000000" + `"]}}`,
		`{"apiVersion":"externaldata.gatekeeper.sh/v1alpha1","kind":"ProviderRequest","request":{"keys":[""]}}`,
		`{"kind":"ProviderRequest"}`,
		`{}`, `[]`, `null`, `{"request":{"keys":null}}`, "\x00", `{"apiVersion":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeProviderRequest(body, 10)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("DecodeProviderRequest error %v does not wrap errBadRequest", err)
			}
			return
		}
		if n := len(req.Request.Keys); n == 0 || n > 10 {
			t.Fatalf("accepted %d keys, want 1..10", n)
		}
	})
}
