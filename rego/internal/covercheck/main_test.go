package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		desc       string
		report     string
		wantFailed bool
		wantErr    bool
		wantOut    []string
	}{
		{
			desc: "packages are directories, tests left out",
			report: `{"files": {
				"rego/lib/a/a.rego": {"covered_lines": 9, "not_covered_lines": 1},
				"rego/lib/a/more.rego": {"covered_lines": 9, "not_covered_lines": 1},
				"rego/lib/a/a_test.rego": {"covered_lines": 0, "not_covered_lines": 50},
				"rego/lib/b/b.rego": {"covered_lines": 10}
			}}`,
			wantOut: []string{"rego/lib/a", "90.00%", "18/20", "rego/lib/b", "100.00%"},
		},
		{
			desc: "one package below",
			report: `{"files": {
				"rego/lib/a/a.rego": {"covered_lines": 8, "not_covered_lines": 2},
				"rego/lib/b/b.rego": {"covered_lines": 10}
			}}`,
			wantFailed: true,
			wantOut:    []string{"rego/lib/a", "80.00%", "FAIL (below 90%)"},
		},
		{desc: "only tests", report: `{"files": {"x/x_test.rego": {"covered_lines": 1}}}`, wantErr: true},
		{desc: "not json", report: `PASS: 3/3`, wantErr: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var out bytes.Buffer
			failed, err := check(strings.NewReader(tc.report), &out, 90)
			if (err != nil) != tc.wantErr {
				t.Fatalf("check() error = %v, want error %v", err, tc.wantErr)
			}
			if failed != tc.wantFailed {
				t.Errorf("check() failed = %v, want %v; output:\n%s", failed, tc.wantFailed, out.String())
			}
			for _, s := range tc.wantOut {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
		})
	}
}
