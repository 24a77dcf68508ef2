// Package gatekeeper holds imagegate's OPA Gatekeeper integration as
// manifests: the ConstraintTemplates generated from rego/lib (library/), the
// imagegate-facts and imagegate-digest Providers (providers/), the
// tag-to-digest mutation (mutation/), the Gatekeeper Config exempting
// imagegate's namespace (config/) and imagegate's own deployment (deploy/).
// See README.md.
//
// The package has no Go API. Its tests are the suite runner: they load every
// template, constraint and sample through the frameworks constraint client
// with the rego driver and external data on, against a real imagegate HTTPS
// server and a real registry.
package gatekeeper
