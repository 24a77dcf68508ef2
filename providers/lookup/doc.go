// Package lookup turns image keys into facts: it parses and checks each key
// without I/O, resolves tags to digests, fetches what a digest describes, and
// caches the results.
//
// Caching rules:
//   - tag → digest lives for a short TTL (tags move);
//   - facts are keyed by repository@digest (content-addressed) plus the
//     configuration generation, in a bounded LRU;
//   - definitive failures (not found, unauthorized, not allowed, invalid
//     content) are cached briefly; transient failures are never cached;
//   - concurrent lookups of one key share a single fetch, which carries on
//     past the first caller's deadline (bounded by FetchTimeout) so the next
//     request finds the answer warm.
package lookup
