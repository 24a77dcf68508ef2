// Command covercheck enforces a minimum coverage per Rego package on the JSON
// report of `opa test --coverage`. Packages are directories (rego/lib/age is
// package imagegate.lib.age: directories mirror packages); _test.rego files
// are left out, so a package's coverage is that of its rules.
//
//	opa test --coverage rego/ > cover.json
//	go run ./rego/internal/covercheck -min 90 cover.json
//
// It prints one line per package and exits 1 when any is below -min, or when
// the report names no policy file at all.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// report is the part of opa's cover.Report that covercheck reads.
type report struct {
	Files map[string]struct {
		CoveredLines    int `json:"covered_lines"`
		NotCoveredLines int `json:"not_covered_lines"`
	} `json:"files"`
}

type lines struct{ covered, notCovered int }

func (l lines) percent() float64 {
	if l.covered+l.notCovered == 0 {
		return 100
	}
	return 100 * float64(l.covered) / float64(l.covered+l.notCovered)
}

func main() {
	minimum := flag.Float64("min", 90, "minimum coverage per package, in percent")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: covercheck [-min N] [REPORT.json]  (stdin without a file)\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	var in io.Reader = os.Stdin
	if flag.NArg() == 1 {
		f, err := os.Open(flag.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, "covercheck:", err)
			os.Exit(2)
		}
		defer f.Close()
		in = f
	}
	failed, err := check(in, os.Stdout, *minimum)
	if err != nil {
		fmt.Fprintln(os.Stderr, "covercheck:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// check writes a line per package and reports whether any is below minimum.
func check(in io.Reader, out io.Writer, minimum float64) (bool, error) {
	var r report
	if err := json.NewDecoder(in).Decode(&r); err != nil {
		return false, fmt.Errorf("reading the coverage report: %w", err)
	}
	pkgs := map[string]lines{}
	for file, c := range r.Files {
		if strings.HasSuffix(file, "_test.rego") {
			continue
		}
		dir := filepath.ToSlash(filepath.Dir(file))
		l := pkgs[dir]
		l.covered += c.CoveredLines
		l.notCovered += c.NotCoveredLines
		pkgs[dir] = l
	}
	if len(pkgs) == 0 {
		return false, fmt.Errorf("the coverage report names no policy files")
	}
	dirs := make([]string, 0, len(pkgs))
	for d := range pkgs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	failed := false
	for _, d := range dirs {
		l := pkgs[d]
		verdict := "ok"
		if l.percent() < minimum {
			verdict = fmt.Sprintf("FAIL (below %.0f%%)", minimum)
			failed = true
		}
		fmt.Fprintf(out, "%-40s %6.2f%%  %4d/%-4d lines  %s\n", d, l.percent(), l.covered, l.covered+l.notCovered, verdict)
	}
	return failed, nil
}
