package rego

import "embed"

// bundled is the policy compiled into the binary: the rule library and the
// ImageReview entrypoint. Tests (_test.rego) are skipped when loading.
//
//go:embed lib imagegate
var bundled embed.FS
