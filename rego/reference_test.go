package rego_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/imagegate/imagegate/rego"
)

// goParse is the engine's Go twin of reference.parse, as policy sees it.
func goParse(key string) parsed { return rego.ParseReference(key) }

// referenceExtras exercise the branches of the parser the corpus of
// lib_test.go reaches less often: error order, lengths, aliases, Unicode.
var referenceExtras = []string{
	"", "a", "A", "@", ":", "/", "a@", "a:", "a@b@c", "a:b:c", "a/b:c/d", "localhost", "localhost/x",
	"localhost:5000/x:1", "LOCALHOST/x", "Index.Docker.IO/x", "registry-1.docker.io/library/x",
	"docker.io/x", "x/y", "ex.com", "ex.com/", "ex.com//x", "ex.com/x/", "ex.com/X", "ex.com/x@sha256:",
	"ex.com/x@sha256:" + strings.Repeat("a", 64), "ex.com/x@sha256:" + strings.Repeat("A", 64),
	"ex.com/x@sha384:" + strings.Repeat("0", 96), "ex.com/x@sha512:" + strings.Repeat("f", 128),
	"ex.com/x:" + strings.Repeat("t", 128), "ex.com/x:" + strings.Repeat("t", 129), "ex.com/x:.t", "ex.com/x:-t",
	"ex.com:99999/x", "ex.com:123456/x", "[::1]:5000/x", "[::1/x", "ex..com/x", "-ex.com/x", "ex_.com/x",
	strings.Repeat("a", 250) + ".com/x", strings.Repeat("a", 254) + ".co:1/x", "ex.com/" + strings.Repeat("a", 256),
	"ex.com/" + strings.Repeat("a/", 200) + "a", strings.Repeat("é", 1025), "ex.com/é", "ex.com/x:é",
	"ex.com/a__b", "ex.com/a___b", "ex.com/a--b", "ex.com/a.-b", "ex.com/x:1@sha256:" + strings.Repeat("b", 64),
	"ex.com/x:1@", "ex.com/x:@sha256:" + strings.Repeat("b", 64),
}

// TestParseReferenceMatchesRego holds the engine's Go parser (which the
// engine runs as reference.parse) to the pure-Rego parser (which Gatekeeper
// templates and `opa test` run) on every reference of both corpora: same
// fields, same error text.
func TestParseReferenceMatchesRego(t *testing.T) {
	pq := prepareParse(t)
	keys := append([]string{}, referenceExtras...)
	for _, tc := range referenceCorpus {
		keys = append(keys, tc.key)
	}
	for _, key := range keys {
		if want, got := regoParse(t, pq, key), goParse(key); got != want {
			t.Errorf("parse(%q):\n Go   %+v\n Rego %+v", key, got, want)
		}
	}
}

// FuzzParseReference compares the two parsers on arbitrary strings.
func FuzzParseReference(f *testing.F) {
	for _, k := range referenceExtras {
		f.Add(k)
	}
	for _, tc := range referenceCorpus {
		f.Add(tc.key)
	}
	pq := prepareParse(f)
	f.Fuzz(func(t *testing.T, key string) {
		if !utf8.ValidString(key) {
			// Policy input is JSON: strings reaching the parser are valid UTF-8.
			return
		}
		if want, got := regoParse(t, pq, key), goParse(key); got != want {
			t.Errorf("parse(%q):\n Go   %+v\n Rego %+v", key, got, want)
		}
	})
}

// TestEngineParsesInGo checks that the engine runs the embedded library's
// reference.parse through the Go builtin (a policy that calls parse on a
// non-string gets the Go parser's error), and that the result is the parse
// object policy expects.
func TestEngineParsesInGo(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/p.rego", `package imagegate.review

import data.imagegate.lib.reference

decision := {"allowed": true, "reason": json.marshal([reference.parse(input.spec.containers[0].image), reference.parse(1)])}
`)
	e, err := rego.New(context.Background(), rego.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	img := "Index.Docker.io/nginx:1.27"
	res, err := e.Decide(context.Background(), map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": img}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reason := res.(map[string]any)["reason"].(string)
	want := `[{"digest":"","error":"","implicitTag":false,"registry":"docker.io","repository":"library/nginx","tag":"1.27","valid":true},{"digest":"","error":"image reference must be a string","implicitTag":false,"registry":"","repository":"","tag":"","valid":false}]`
	if reason != want {
		t.Errorf("parse results = %s\nwant %s", reason, want)
	}
}
