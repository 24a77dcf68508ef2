// Package certs serves TLS for imagegate from PEM files that are reloaded
// when they change, and generates self-signed development material.
//
// imagegate is called over HTTPS by OPA Gatekeeper (external data provider;
// Gatekeeper presents its webhook certificate as a TLS client certificate and
// trusts only the Provider's caBundle) and by kube-apiserver's
// ImagePolicyWebhook. In a cluster the serving certificate, key and the
// client CA bundle are mounted from Kubernetes secrets that cert-manager
// rotates; [Reloader] picks up rotated files without a restart.
//
// # Reloading
//
// [NewReloader] loads the certificate, key and optional client CA bundle
// immediately and fails with an error naming the offending file. The
// [tls.Config] returned by [Reloader.TLSConfig] uses GetConfigForClient, so
// every handshake sees the current material. On a handshake, if at least
// Options.CheckInterval has passed since the previous check, the files are
// stat'ed (modification time, size and, where available, inode); if any of
// them changed the whole set is loaded again. A broken set (for example a
// half-written rotation or a key that does not match the certificate) is
// logged at Error level and reported to Options.OnReload, the last good set
// keeps being served, and loading is retried on a later check. No background
// goroutines are started.
//
// When a client CA bundle is configured, clients must present a certificate
// that verifies against it (tls.RequireAndVerifyClientCert). The minimum TLS
// version defaults to TLS 1.3.
//
// # Development material
//
// [Generate] writes a self-signed ECDSA P-256 CA, a server certificate and a
// client certificate into a directory for `make run` and tests. It is
// idempotent: if the directory already holds a CA certificate the existing
// files are validated and returned unchanged.
package certs
