package registry

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imagegate/imagegate/providers/facts"
)

// MaxReferenceLength bounds an image key. The distribution grammar allows a
// 255-character repository path; a registry host, a 128-character tag and a
// sha512 digest still fit well within this.
const MaxReferenceLength = 1024

// DockerHub is how facts name Docker Hub, whatever alias the key used.
const DockerHub = "docker.io"

// Ref is a parsed image key.
type Ref struct {
	// Key is the image string exactly as the caller wrote it.
	Key string
	// Facts is the normalised reference reported in facts.
	Facts facts.Reference
	// Tag is set when the key names a tag (written, or the implicit "latest"
	// of a key with neither tag nor digest).
	Tag *name.Tag
	// Digest is set when the key pins a digest (repo@d or repo:tag@d).
	Digest *name.Digest
}

// Registry returns the registry part as written in allowlists: host[:port],
// with Docker Hub as "docker.io".
func (r Ref) Registry() string { return r.Facts.Registry }

// Repository returns the repository to fetch from.
func (r Ref) Repository() name.Repository {
	if r.Digest != nil {
		return r.Digest.Repository
	}
	return r.Tag.Repository
}

// Canonical returns registry/repository followed by :tag and/or @digest, the
// form the facts cache and the digest provider use.
func (r Ref) Canonical() string {
	s := r.Facts.Registry + "/" + r.Facts.Repository
	if r.Facts.Tag != "" {
		s += ":" + r.Facts.Tag
	}
	if r.Facts.Digest != "" {
		s += "@" + r.Facts.Digest
	}
	return s
}

// Parse parses an image key with the distribution grammar: Docker Hub
// normalisation (nginx → docker.io/library/nginx:latest), registry ports, and
// tag, digest or tag+digest keys. insecure reports registries reached over
// plain HTTP (may be nil). Parse does no I/O. Errors carry
// facts.CodeInvalidReference.
func Parse(key string, insecure func(registry string) bool) (Ref, error) {
	bad := func(format string, args ...any) (Ref, error) {
		return Ref{}, facts.Errorf(facts.CodeInvalidReference, key, format, args...)
	}
	if key == "" {
		return bad("empty image reference")
	}
	if len(key) > MaxReferenceLength {
		return bad("image reference is %d bytes, longer than %d", len(key), MaxReferenceLength)
	}
	if i := strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }); i >= 0 {
		return bad("image reference contains a space or control character at byte %d", i)
	}
	if strings.Contains(key, "://") {
		return bad("image reference must not contain a URL scheme")
	}
	// Facts, the allowlist and the fetch must agree on the registry: fold its
	// case and Docker Hub's aliases before go-containerregistry sees the key.
	// ref.Key keeps the key as written.
	norm := normalizeRegistry(key)
	opts := []name.Option{name.WeakValidation}
	if insecure != nil {
		// The registry part is known only after parsing; parse once to find it.
		if probe, err := name.ParseReference(norm, name.WeakValidation); err == nil && insecure(canonicalRegistry(probe.Context().RegistryStr())) {
			opts = append(opts, name.Insecure)
		}
	}

	var ref Ref
	ref.Key = key
	base, dgst, hasDigest := strings.Cut(norm, "@")
	if hasDigest {
		d, err := name.NewDigest(norm, opts...)
		if err != nil {
			return bad("%v", stripBadName(err))
		}
		ref.Digest = &d
		ref.Facts.Digest = dgst
		// A repo:tag@digest key keeps its tag for freshness checks.
		if hasExplicitTag(base) {
			t, err := name.NewTag(base, opts...)
			if err != nil {
				return bad("%v", stripBadName(err))
			}
			ref.Tag = &t
			ref.Facts.Tag = t.TagStr()
		}
		ref.Facts.Registry = canonicalRegistry(d.RegistryStr())
		ref.Facts.Repository = d.RepositoryStr()
		if err := checkNames(ref.Facts); err != nil {
			return bad("%v", err)
		}
		return ref, nil
	}
	t, err := name.NewTag(norm, opts...)
	if err != nil {
		return bad("%v", stripBadName(err))
	}
	ref.Tag = &t
	ref.Facts.Tag = t.TagStr()
	ref.Facts.Registry = canonicalRegistry(t.RegistryStr())
	ref.Facts.Repository = t.RepositoryStr()
	if err := checkNames(ref.Facts); err != nil {
		return bad("%v", err)
	}
	return ref, nil
}

// checkNames applies the distribution grammar where go-containerregistry's
// weak validation is lax: it checks a repository's character set only (so
// "a//b", "/a", "a/" and "a..b" pass) and a registry only for URL syntax (so
// any bytes do).
func checkNames(r facts.Reference) error {
	host := r.Registry
	if i := strings.LastIndex(host, ":"); i > strings.LastIndex(host, "]") {
		host = host[:i]
	}
	if len(host) > 253 || !registryRE.MatchString(r.Registry) {
		return fmt.Errorf("registry %q is not a valid host or host:port", r.Registry)
	}
	if !repositoryRE.MatchString(r.Repository) {
		return fmt.Errorf("repository %q does not match the distribution grammar (lower-case path components separated by single slashes)", r.Repository)
	}
	return nil
}

// registryRE is host[:port] with a DNS name, an IPv4 address or a bracketed
// IPv6 address, lower-cased by normalizeRegistry. Underscores are accepted in
// DNS labels as the registry allowlist accepts them.
var registryRE = regexp.MustCompile(`^(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$`)

// repositoryRE is the distribution grammar's path: components of lower-case
// alphanumerics joined by ".", "_", "__" or dashes, separated by single
// slashes.
var repositoryRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// normalizeRegistry lower-cases the registry part of key (host names are
// case-insensitive) and writes Docker Hub's aliases as the name
// go-containerregistry adds "library/" for, so "registry-1.docker.io/nginx"
// and "Docker.io/nginx" name docker.io/library/nginx like "nginx" does. The
// registry part is the first path component when it holds a '.' or ':' or is
// "localhost", as go-containerregistry decides.
func normalizeRegistry(key string) string {
	base, rest, hasDigest := strings.Cut(key, "@")
	domain, path, ok := strings.Cut(base, "/")
	if !ok || !(strings.ContainsAny(domain, ".:") || domain == "localhost") {
		return key
	}
	d := strings.ToLower(domain)
	if canonicalRegistry(d) == DockerHub {
		d = name.DefaultRegistry
	}
	if d == domain {
		return key
	}
	out := d + "/" + path
	if hasDigest {
		out += "@" + rest
	}
	return out
}

// hasExplicitTag reports whether the part before '@' ends in ":tag" (a colon
// after the last slash), as opposed to a registry port.
func hasExplicitTag(base string) bool {
	i := strings.LastIndex(base, ":")
	return i > strings.LastIndex(base, "/")
}

// canonicalRegistry maps Docker Hub's aliases to "docker.io".
func canonicalRegistry(r string) string {
	switch r {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return DockerHub
	}
	return r
}

// stripBadName drops go-containerregistry's generic prefix so the reason reads
// well after "invalid_reference: <image>: ".
func stripBadName(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "could not parse reference: ")
	return fmt.Errorf("%s", msg)
}
