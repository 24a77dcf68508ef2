// Package guard decides which container registries imagegate may contact
// and which network addresses it may dial while doing so.
//
// # Threat model
//
// imagegate resolves image references taken from pod specs, and pod specs
// are written by whoever can create pods: an attacker. Without a guard the
// registry part of an image reference ("169.254.169.254/x", "10.0.0.5:2379/x",
// "localhost:8080/x") turns imagegate into a server-side request forgery
// (SSRF) proxy that reaches cloud metadata endpoints, the cluster's internal
// services and loopback-only admin ports, with imagegate's network position
// and credentials.
//
// The guard applies three independent checks:
//
//   - CheckRegistry: the registry named in the reference must be listed in
//     registries.allow (exact host or host:port; "*" must be written out to
//     allow everything). This is a pure syntactic check with no I/O.
//   - DialContext: every outgoing TCP connection, including those made for
//     redirects to blob CDNs that are not themselves registries, resolves the
//     host exactly once, refuses loopback, private, link-local, CGNAT,
//     multicast, unspecified and similar addresses unless the host is listed
//     in registries.private, and dials the checked IP literal. Dialling the
//     literal pins the connection to the address that was checked, so DNS
//     rebinding between check and connect is impossible.
//   - Transport: plain HTTP is used only for registries listed in
//     registries.insecure; any other http:// request (including every
//     redirect hop) is upgraded to https, and other URL schemes are refused.
//     Environment proxies are never used, because a proxy would make the
//     dial-time address check meaningless.
//
// Every refusal is an *Error that wraps ErrNotAllowed and says how an
// operator can allow the registry if the refusal is unwanted.
package guard
