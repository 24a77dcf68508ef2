package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/lookup"
	"github.com/imagegate/imagegate/providers/registry"
)

const (
	apiVersionV1beta1  = "externaldata.gatekeeper.sh/v1beta1"
	apiVersionV1alpha1 = "externaldata.gatekeeper.sh/v1alpha1"
	// maxSystemErrorKeys bounds how many failing keys systemError names.
	maxSystemErrorKeys = 5
)

// errBadRequest is wrapped by every request validation failure.
var errBadRequest = errors.New("bad_request")

// decodeProviderRequest reads and validates a ProviderRequest. Nothing is
// fetched or cached for a request that fails here.
func (s *Server) decodeProviderRequest(r *http.Request) (*externaldata.ProviderRequest, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, bad("Content-Type %q, want application/json", ct)
	}
	bp := buffers.Get().(*[]byte)
	defer putBuffer(bp)
	buf := bytes.NewBuffer((*bp)[:0])
	_, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, s.limits.MaxBodyBytes))
	*bp = buf.Bytes()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, bad("request body larger than %d bytes", mbe.Limit)
		}
		return nil, bad("reading request body: %v", err)
	}
	// The decoded request holds copies of its strings: the buffer is reused.
	return DecodeProviderRequest(buf.Bytes(), s.limits.MaxKeys)
}

// buffers recycles request and response buffers of the provider endpoints:
// at thousands of requests a second, fresh ones are most of the garbage,
// and garbage collection is what stretches the tail latency.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// maxPooledBuffer: larger buffers (a 1,000-key request) are left to the GC.
const maxPooledBuffer = 1 << 20

func putBuffer(bp *[]byte) {
	if cap(*bp) <= maxPooledBuffer {
		*bp = (*bp)[:0]
		buffers.Put(bp)
	}
}

// DecodeProviderRequest parses and validates a ProviderRequest body.
func DecodeProviderRequest(body []byte, maxKeys int) (*externaldata.ProviderRequest, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
	}
	var req externaldata.ProviderRequest
	// Unmarshal appends into the capacity it finds: room for about as many
	// keys as the body has strings saves growing the slice key by key.
	req.Request.Keys = make([]string, 0, min(bytes.Count(body, []byte{'"'})/2, maxKeys+1))
	// Unmarshal decodes in place (a Decoder copies the body into a buffer of
	// its own, garbage on every request); a body it refuses is decoded
	// again by a Decoder, which tells trailing data from a bad value.
	if uerr := json.Unmarshal(body, &req); uerr != nil {
		req = externaldata.ProviderRequest{}
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&req); err != nil {
			return nil, bad("body is not a ProviderRequest: %v", err)
		}
		if dec.More() {
			return nil, bad("trailing data after the ProviderRequest")
		}
		return nil, bad("body is not a ProviderRequest: %v", uerr)
	}
	if req.APIVersion != apiVersionV1beta1 && req.APIVersion != apiVersionV1alpha1 {
		return nil, bad("apiVersion %q, want %q", req.APIVersion, apiVersionV1beta1)
	}
	if req.Kind != externaldata.ProviderRequestKind {
		return nil, bad("kind %q, want %q", req.Kind, externaldata.ProviderRequestKind)
	}
	n := len(req.Request.Keys)
	if n == 0 {
		return nil, bad("request.keys is empty")
	}
	if n > maxKeys {
		return nil, bad("%d keys, more than the limit of %d", n, maxKeys)
	}
	for i, k := range req.Request.Keys {
		if len(k) > registry.MaxReferenceLength {
			return nil, bad("request.keys[%d] is %d bytes, longer than %d", i, len(k), registry.MaxReferenceLength)
		}
	}
	return &req, nil
}

// handleFacts answers imagegate-facts: one item per key with the facts as
// value; definitive failures as per-key errors; transient ones omitted with a
// systemError (Gatekeeper caches per-key errors, not omitted keys).
func (s *Server) handleFacts(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeProviderRequest(r)
	if err != nil {
		s.writeProviderError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.budget)
	defer cancel()
	results := LookupAll(ctx, s.lookup, req.Request.Keys)

	items := make([]externaldata.Item, 0, len(results))
	kfs := make([]keyFacts, len(results)) // one allocation for every key's spliced value
	var transient []string
	for i := range results {
		res := &results[i]
		switch {
		case res.Err == nil:
			items = append(items, externaldata.Item{Key: res.Key, Value: factsValue(res, &kfs[i])})
			s.metrics.items.WithLabelValues("facts", "ok").Inc()
		case facts.CodeOf(res.Err).Definitive():
			items = append(items, externaldata.Item{Key: res.Key, Error: res.Err.Error()})
			s.metrics.items.WithLabelValues("facts", string(facts.CodeOf(res.Err))).Inc()
		default:
			transient = append(transient, res.Err.Error())
			s.metrics.items.WithLabelValues("facts", "omitted").Inc()
		}
	}
	resp := providerResponse(items)
	if len(transient) > 0 {
		resp.Response.SystemError = systemError(transient, len(results))
	}
	writeProviderResponse(w, http.StatusOK, resp)
}

// handleDigest answers imagegate-digest for Gatekeeper mutation: a string
// value registry/repository@sha256:… per key. Mutation needs an empty
// systemError, so every failure, transient ones included, is a per-key error
// and the Assign's failurePolicy decides.
func (s *Server) handleDigest(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeProviderRequest(r)
	if err != nil {
		s.writeProviderError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.budget)
	defer cancel()
	items := lookup.Each(ctx, req.Request.Keys, func(ctx context.Context, key string) externaldata.Item {
		p, err := s.lookup.Digest(ctx, key)
		if err != nil {
			return externaldata.Item{Key: key, Error: err.Error()}
		}
		return externaldata.Item{Key: key, Value: p.Reference(s.keepTag)}
	})
	for _, it := range items {
		result := "ok"
		if it.Error != "" {
			result, _, _ = strings.Cut(it.Error, ":")
		}
		s.metrics.items.WithLabelValues("digest", result).Inc()
	}
	writeProviderResponse(w, http.StatusOK, providerResponse(items))
}

// encodedBases holds, per digest's facts (lookup's shared base value), its
// JSON after the per-key fields: encoded once, whatever number of keys name
// the digest, and dropped with the base. A warm key's value is then written
// as its own image, reference and tagDigest followed by these bytes.
var encodedBases facts.Memo[[]byte]

// basePrefix is how a base (no image, reference or tagDigest) encodes up to
// its first digest-level field.
const basePrefix = `{"image":"","reference":{"registry":"","repository":"","tag":"","digest":""},`

// keyFacts is a warm key's facts value: the key's own fields, then the
// digest's encoded rest (appendProviderResponse writes it).
type keyFacts struct {
	image     string
	reference facts.Reference
	tagDigest string
	rest      []byte // starts with "digest":
}

// factsValue is the Item value for res (no error): for a key answered from
// the caches, its own fields spliced before its digest's JSON (encoded once
// per digest), kept in kf; otherwise its facts encoded whole.
func factsValue(res *Result, kf *keyFacts) any {
	if c, ok := res.Parts(); ok && c.Base.Image == "" && c.Base.TagDigest == "" {
		rest, ok := encodedBases.Get(c.Base)
		if !ok {
			b, err := json.Marshal(c.Base)
			if err == nil && strings.HasPrefix(string(b), basePrefix) {
				rest = b[len(basePrefix):]
				encodedBases.Put(c.Base, rest)
			}
		}
		if rest != nil {
			*kf = keyFacts{image: res.Key, reference: c.Reference, tagDigest: c.TagDigest, rest: rest}
			return kf
		}
	}
	f := res.Facts()
	b, err := json.Marshal(f)
	if err != nil {
		return f
	}
	return json.RawMessage(b)
}

// appendKeyFacts writes k as one JSON object: the same members json.Marshal
// writes for the key's facts, with tagDigest moved ahead of the
// digest-level fields.
func appendKeyFacts(b []byte, k *keyFacts) []byte {
	f := k
	b = append(b, `{"image":`...)
	b = appendString(b, f.image)
	b = append(b, `,"reference":{"registry":`...)
	b = appendString(b, f.reference.Registry)
	b = append(b, `,"repository":`...)
	b = appendString(b, f.reference.Repository)
	b = append(b, `,"tag":`...)
	b = appendString(b, f.reference.Tag)
	b = append(b, `,"digest":`...)
	b = appendString(b, f.reference.Digest)
	b = append(b, `},`...)
	if f.tagDigest != "" {
		b = append(b, `"tagDigest":`...)
		b = appendString(b, f.tagDigest)
		b = append(b, ',')
	}
	return append(b, k.rest...)
}

func providerResponse(items []externaldata.Item) externaldata.ProviderResponse {
	return externaldata.ProviderResponse{
		APIVersion: apiVersionV1beta1,
		Kind:       externaldata.ProviderResponseKind,
		Response:   externaldata.Response{Idempotent: true, Items: items},
	}
}

// systemError summarises transient failures: how many, and the first few.
func systemError(msgs []string, total int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "unavailable: %d of %d keys could not be looked up now (transient, not cached; retry): ", len(msgs), total)
	seen := map[string]bool{}
	n := 0
	for _, m := range msgs {
		if seen[m] || n == maxSystemErrorKeys {
			continue
		}
		seen[m] = true
		if n > 0 {
			b.WriteString("; ")
		}
		b.WriteString(m)
		n++
	}
	if len(seen) < len(msgs) || n == maxSystemErrorKeys {
		b.WriteString("; …")
	}
	return b.String()
}

// writeProviderError answers a rejected request with a ProviderResponse whose
// systemError says why, so Gatekeeper's logs and violations show the reason.
func (s *Server) writeProviderError(w http.ResponseWriter, status int, err error) {
	writeSystemError(w, status, err.Error())
}

// writeSystemError answers with an empty ProviderResponse whose systemError
// is msg: what Gatekeeper shows users for a request that failed as a whole.
func writeSystemError(w http.ResponseWriter, status int, msg string) {
	resp := providerResponse(nil)
	resp.Response.SystemError = msg
	writeProviderResponse(w, status, resp)
}

// writeProviderResponse writes resp exactly as writeJSON would (the same
// bytes: TestEncodeProviderResponseMatchesEncodingJSON), copying each item's
// pre-encoded facts (json.RawMessage) instead of re-validating it.
func writeProviderResponse(w http.ResponseWriter, status int, resp externaldata.ProviderResponse) {
	size := 128 + len(resp.Response.SystemError)
	for _, it := range resp.Response.Items {
		size += 32 + len(it.Key) + len(it.Error)
		switch v := it.Value.(type) {
		case *keyFacts:
			size += 256 + len(v.image) + len(v.rest)
		case json.RawMessage:
			size += len(v)
		case string:
			size += len(v)
		}
	}
	bp := buffers.Get().(*[]byte)
	b := *bp
	if cap(b) < size {
		b = make([]byte, 0, size)
	}
	b = appendProviderResponse(b[:0], resp)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b) // copied into the connection's buffer
	*bp = b
	putBuffer(bp)
}

// appendProviderResponse appends resp's JSON and a newline, as
// json.Encoder.Encode writes it (HTML-escaped strings, omitempty fields).
func appendProviderResponse(b []byte, resp externaldata.ProviderResponse) []byte {
	b = append(b, '{')
	comma := false
	field := func(name string) {
		if comma {
			b = append(b, ',')
		}
		comma = true
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	if resp.APIVersion != "" {
		field("apiVersion")
		b = appendString(b, resp.APIVersion)
	}
	if resp.Kind != "" {
		field("kind")
		b = appendString(b, string(resp.Kind))
	}
	field("response")
	b = append(b, '{')
	comma = false
	r := resp.Response
	if r.Idempotent {
		field("idempotent")
		b = append(b, "true"...)
	}
	if len(r.Items) > 0 {
		field("items")
		b = append(b, '[')
		for i, it := range r.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			comma = false
			if it.Key != "" {
				field("key")
				b = appendString(b, it.Key)
			}
			if it.Value != nil {
				field("value")
				switch v := it.Value.(type) {
				case *keyFacts:
					b = appendKeyFacts(b, v)
				case string:
					b = appendString(b, v)
				case json.RawMessage:
					if v == nil {
						b = append(b, "null"...)
					} else {
						b = append(b, v...)
					}
				default:
					b = appendJSON(b, it.Value)
				}
			}
			if it.Error != "" {
				field("error")
				b = appendString(b, it.Error)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
		comma = true
	}
	if r.SystemError != "" {
		field("systemError")
		b = appendString(b, r.SystemError)
	}
	return append(b, '}', '}', '\n')
}

// appendString appends s as json.Marshal encodes it (without boxing it
// into an interface, which would allocate, when it needs no escaping).
func appendString(b []byte, s string) []byte {
	if plainJSONString(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	return appendJSON(b, s)
}

// appendJSON appends v as json.Marshal encodes it.
func appendJSON(b []byte, v any) []byte {
	enc, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, enc...)
}

// plainJSONString: s needs no escaping in encoding/json's output (printable
// ASCII other than '"', '\\' and the HTML-escaped '<', '>', '&').
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// writeJSON is the one place other responses are encoded.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
