package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/types"
)

const repoRoot = "../../.."

// TestGeneratedInSync fails when a template.yaml differs from what `make
// generate` would write from rego/lib, gatekeeper/lib and the templates'
// constraint.tmpl and src.rego (`make verify-generated` checks the same with
// git diff).
func TestGeneratedInSync(t *testing.T) {
	libs, err := loadLibs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := filepath.Glob(filepath.Join(repoRoot, libraryDir, "*", "constraint.tmpl"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no constraint.tmpl (%v)", err)
	}
	for _, tmpl := range dirs {
		dir := filepath.Dir(tmpl)
		want, err := render(repoRoot, dir, libs)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "template.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s/template.yaml is stale: run make generate", rel(repoRoot, dir))
		}
	}
}

func TestLibRewrite(t *testing.T) {
	libs, err := loadLibs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"lib.imagegate.reference", "lib.imagegate.signer", "lib.imagegate.signature", "lib.imagegate.gatekeeper.pods"} {
		l, ok := libs[pkg]
		if !ok {
			t.Fatalf("no %s", pkg)
		}
		if strings.Contains(l.text, "imagegate.lib.") {
			t.Errorf("%s still mentions imagegate.lib.", pkg)
		}
	}
	if got := libs["lib.imagegate.signature"].imports; len(got) != 1 || got[0] != "lib.imagegate.signer" {
		t.Errorf("lib.imagegate.signature imports %v, want [lib.imagegate.signer]", got)
	}
	if libs["lib.imagegate.age"].params == nil {
		t.Error("lib.imagegate.age: no METADATA custom.parameters")
	}
}

func TestLibRefusesOtherData(t *testing.T) {
	for _, tc := range []struct {
		desc, src, want string
	}{
		{
			desc: "reads data outside data.lib",
			src:  "package lib.imagegate.x\n\np := data.imagegate.params\n",
			want: "data.imagegate.params: Gatekeeper templates can read only data.lib.*",
		},
		{
			desc: "imports data outside data.lib",
			src:  "package lib.imagegate.x\n\nimport data.inventory\n\np := inventory\n",
			want: "templates may only import data.lib.*",
		},
		{
			desc: "package outside lib",
			src:  "package imagegate.x\n\np := 1\n",
			want: "is not under lib",
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := parseLib("x.rego", tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseLib() error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestIndent(t *testing.T) {
	got := indent(4, "a\n\n\tb  \n")
	if want := "    a\n\n    \tb"; got != want {
		t.Errorf("indent() = %q, want %q", got, want)
	}
}

// TestTemplatesCompileStrict is `opa check --strict` for each template as
// Gatekeeper assembles it: src.rego with its libs, OPA's capabilities plus
// external_data (which Gatekeeper's rego driver registers).
func TestTemplatesCompileStrict(t *testing.T) {
	libs, err := loadLibs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = append(caps.Builtins, &ast.Builtin{
		Name: "external_data",
		Decl: types.NewFunction(types.Args(types.A), types.A),
	})
	dirs, _ := filepath.Glob(filepath.Join(repoRoot, libraryDir, "*", "src.rego"))
	for _, src := range dirs {
		name := rel(repoRoot, src)
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ast.ParseModuleWithOpts(name, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		direct, err := libImports(name, m)
		if err != nil {
			t.Fatal(err)
		}
		needed, err := closure(direct, libs)
		if err != nil {
			t.Fatal(err)
		}
		modules := map[string]*ast.Module{name: m}
		for _, pkg := range needed {
			lm, err := ast.ParseModuleWithOpts(libs[pkg].file, libs[pkg].text, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			modules[libs[pkg].file] = lm
		}
		c := ast.NewCompiler().WithStrict(true).WithCapabilities(caps)
		if c.Compile(modules); c.Failed() {
			t.Errorf("%s: %v", name, c.Errors)
		}
	}
}

// TestRegoFormatted is `opa fmt --fail` for the Gatekeeper Rego.
func TestRegoFormatted(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot, gkLibDir, "*.rego"))
	srcs, _ := filepath.Glob(filepath.Join(repoRoot, libraryDir, "*", "src.rego"))
	for _, f := range append(files, srcs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := format.SourceWithOpts(f, b, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if string(got) != string(b) {
			t.Errorf("%s is not opa fmt formatted", rel(repoRoot, f))
		}
	}
}
