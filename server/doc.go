// Package server serves imagegate over HTTPS: the Gatekeeper external-data
// providers (facts and digest), health, readiness and metrics. Handlers decode,
// validate, call the lookup service and encode; wire mapping follows the
// Gatekeeper contract: definitive per-key failures become per-key errors that
// Gatekeeper may cache, transient ones leave the key out and set systemError,
// which it does not.
package server
