package rego

import (
	"os"
	"testing"
)

// TestEmbeddedLibraryParsesInGo: the engine's embedded library calls the Go
// parser from reference.parse (and only there), and a policy.dir with its
// own imagegate.lib keeps its own parse.
func TestEmbeddedLibraryParsesInGo(t *testing.T) {
	mods, _, _, _, err := load("", false)
	if err != nil {
		t.Fatal(err)
	}
	m := mods["embedded/lib/reference/reference.rego"]
	if m == nil {
		t.Fatal("the embedded bundle has no lib/reference/reference.rego")
	}
	if got := builtinCalls(ParseReferenceBuiltin, m); got != 1 {
		t.Errorf("embedded reference.rego calls %s %d times, want 1", ParseReferenceBuiltin, got)
	}
	parses := 0
	for _, r := range m.Rules {
		if r.Head.Name.String() == "parse" {
			parses++
		}
	}
	if parses != 1 {
		t.Errorf("embedded reference.rego has %d parse rules, want 1", parses)
	}
	for name, m := range mods {
		if name != "embedded/lib/reference/reference.rego" && builtinCalls(ParseReferenceBuiltin, m) != 0 {
			t.Errorf("%s calls %s", name, ParseReferenceBuiltin)
		}
	}

	dir := t.TempDir()
	own := "package imagegate.lib.reference\n\nparse(image) := {\"valid\": false, \"error\": image}\n"
	if err := writeTestFile(dir+"/ref.rego", own); err != nil {
		t.Fatal(err)
	}
	mods, _, _, _, err = load(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range mods {
		if builtinCalls(ParseReferenceBuiltin, m) != 0 {
			t.Errorf("with a policy.dir bringing its own library, %s calls %s", name, ParseReferenceBuiltin)
		}
	}
}

func writeTestFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
