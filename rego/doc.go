// Package rego is imagegate's policy engine: embedded OPA evaluating either the
// policy bundle embedded in the binary (rego/lib and rego/imagegate) or a
// directory of Rego and data that replaces the embedded entrypoint and is
// reloaded when it changes. A broken edit never replaces a working policy: it
// is reported (file:line) through Status and the reload hook while the last
// good policy keeps serving. Each load compiles the policy and prepares the
// decision query once; Decide evaluates that prepared query (concurrently,
// with no shared mutable state). Only policy.opaConfig (remote bundles,
// decision logs) starts the OPA SDK, and decisions then go through
// sdk.Decision.
//
// Every policy is compiled with capabilities that drop http.send,
// net.lookup_ip_addr and opa.runtime; those builtins also fail at run time if
// a remote bundle uses them. Facts reach policy only through the builtin
// imagegate.facts(images), which fetches all images of a review at once and
// only when a rule asks: a naming/pinning/registry-only policy makes no
// registry call.
//
// What keeps warm reviews cheap:
//   - the embedded library's reference.parse runs as the Go builtin
//     imagegate.parse_reference (the pure-Rego parser, which Gatekeeper
//     templates and `opa test` run, is held to the same answers by
//     TestParseReferenceMatchesRego and FuzzParseReference);
//   - the embedded checked of pinning, registry and signature first asks the
//     Go builtin imagegate.passes whether the rule would report nothing
//     (native.go); only an image it cannot pass is checked, and its messages
//     written, by the Rego as written (TestPassesMatchesRego, FuzzPasses, and
//     TestFoldConstantsSameDecisions for whole decisions);
//   - the embedded review's no_violations first asks the Go builtin
//     imagegate.review_passes whether every image passes every rule of the
//     namespace's plan (only for plans whose rules all have a Go twin above,
//     with valid parameters, and images whose facts were read); otherwise the
//     violation rules as written decide (TestReviewPassesMatchesRego);
//   - rules marked constant (the review's plans) are evaluated once per load
//     (constants.go);
//   - each digest's facts are converted to a Rego value once (facts.Memo,
//     dropped with the cached facts), not once per review: a review only
//     adds each key's own image, reference and tagDigest.
//
// A policy.dir that brings its own imagegate.lib runs its library as written.
package rego
