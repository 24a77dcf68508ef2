// Package registry resolves container images in their registries with
// go-containerregistry: tag to digest with a manifest HEAD, manifests and
// indexes with every platform child, and image configs. It checks the
// registry allowlist before any network I/O, dials only through the SSRF guard,
// bounds every size and count it reads and verifies content against digests.
//
// Errors are *facts.Error values whose Code tells a definitive answer about the
// image (not found, unauthorized, not allowed) from a failure to look
// (timeouts, throttling, server errors), which callers must never cache.
package registry
