// Package signature discovers and verifies the Sigstore signatures and
// attestations of an image digest, in both storage layouts cosign writes:
//
//   - Sigstore bundles (v0.3) attached as OCI referrers — cosign v3's default
//     and v2's --new-bundle-format — found with the referrers API or its
//     sha256-<hex> fallback tag;
//   - legacy cosign tags sha256-<hex>.sig (simple signing payloads, signature
//     and keyless material in layer annotations) and sha256-<hex>.att (DSSE
//     envelopes).
//
// Verification uses sigstore-go with one long-lived verifier per trust source
// (each named public key, each trusted root — from a file, or fetched from a
// TUF mirror when the Verifier is built). Refresh loads them all again (the
// server calls it every trust.refreshInterval, never per request) and swaps
// the new set in only when the whole load succeeded. A key may be required to
// come with a Rekor entry verified by a named root's logs. Only verified
// entries are reported as signatures or attestations; every other entry
// becomes a verification error with a reason a person can act on. Identity
// matching (issuer, subject, key name, counts) is policy's job, not this
// package's.
//
// A listing that could not be read (throttled, 5xx, timeout) is a transient
// error, never "no signatures".
package signature
