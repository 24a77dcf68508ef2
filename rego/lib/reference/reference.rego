# METADATA
# title: Image reference parser
# description: |
#   parse(image) parses a container image reference with the distribution
#   grammar, in pure Rego (no network), normalised as imagegate's facts name
#   images:
#
#   - the registry is the first path component when it holds a '.' or a ':'
#     or is exactly "localhost"; otherwise the image is on Docker Hub;
#   - the registry is lower-cased, and Docker Hub's aliases (index.docker.io,
#     registry-1.docker.io) are reported as "docker.io";
#   - a single-component Docker Hub repository gets "library/" (nginx →
#     docker.io/library/nginx);
#   - repo:tag@digest keeps both the tag and the digest;
#   - a reference with neither tag nor digest gets the implicit tag "latest"
#     (implicitTag: true).
#
#   Grammar: registry host[:port] (DNS labels, IPv4, bracketed IPv6), at most
#   253 characters before the port; repository path components
#   [a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)* separated by single slashes, at most
#   255 characters as written; tag [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; digest
#   sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex> (lower-case hex); the
#   whole reference at most 1024 characters.
#
#   The result is always an object: {valid, error, registry, repository, tag,
#   digest, implicitTag}. When valid is false, error says why and the other
#   fields are empty.
# related_resources:
#   - ref: https://github.com/distribution/reference/blob/main/regexp.go
#     description: the distribution reference grammar
#   - ref: https://pkg.go.dev/github.com/google/go-containerregistry/pkg/name
#     description: go-containerregistry's parser, which imagegate's Go side uses and rego/lib_test.go compares against
# custom:
#   returns:
#     type: object
#     properties:
#       valid: {type: boolean}
#       error: {type: string}
#       registry: {type: string, description: 'host[:port], lower-case; "docker.io" for Docker Hub'}
#       repository: {type: string, description: 'path, with "library/" for single-component Docker Hub names'}
#       tag: {type: string, description: 'as written, or "latest" when implicit; empty for repo@digest'}
#       digest: {type: string, description: 'algorithm:hex, empty for a tag reference'}
#       implicitTag: {type: boolean, description: 'true when neither a tag nor a digest was written'}
package imagegate.lib.reference

docker_hub := "docker.io"

docker_hub_aliases := {"docker.io", "index.docker.io", "registry-1.docker.io"}

max_length := 1024

# parse(image) is the parsed, normalised reference; see the package description.
parse(image) := _invalid("image reference must be a string") if {
	not is_string(image)
} else := _invalid("empty image reference") if {
	image == ""
} else := _invalid(sprintf("image reference is %d characters, longer than %d", [count(image), max_length])) if {
	count(image) > max_length
} else := _invalid(msg) if {
	msg := _problem(_split(image))
	msg != ""
} else := ref if {
	parts := _split(image)
	ref := {
		"valid": true,
		"error": "",
		"registry": parts.registry,
		"repository": parts.repository,
		"tag": parts.tag,
		"digest": parts.digest,
		"implicitTag": parts.implicitTag,
	}
}

# name(ref) is "registry/repository" of a parsed reference, the string naming
# and registry rules match.
name(ref) := sprintf("%s/%s", [ref.registry, ref.repository])

# normalize_registry(host) writes a registry as facts and parse do: lower-case,
# Docker Hub's aliases as "docker.io".
normalize_registry(host) := docker_hub if {
	lower(host) in docker_hub_aliases
} else := lower(host)

_invalid(msg) := {
	"valid": false,
	"error": msg,
	"registry": "",
	"repository": "",
	"tag": "",
	"digest": "",
	"implicitTag": false,
}

# _split cuts a reference as go-containerregistry does: '@' before the digest;
# a ':' after the last '/' before the tag; a first path component with '.' or
# ':' or "localhost" is the registry.
_split(image) := {
	"atCount": count(at),
	"digest": digest,
	"hasTag": nt.hasTag,
	"tag": tag,
	"implicitTag": implicit,
	"rawRegistry": rr.registry,
	"registry": registry,
	"rawRepository": rr.repository,
	"repository": _repository(registry, rr.repository),
} if {
	at := split(image, "@")
	digest := concat("@", array.slice(at, 1, count(at)))
	nt := _name_tag(at[0])
	implicit := _implicit(count(at), nt.hasTag)
	tag := _tag(nt.tag, implicit)
	rr := _registry_repository(nt.name)
	registry := normalize_registry(rr.registry)
}

_name_tag(base) := {"name": concat(":", array.slice(parts, 0, count(parts) - 1)), "tag": last, "hasTag": true} if {
	parts := split(base, ":")
	count(parts) > 1
	last := parts[count(parts) - 1]
	not contains(last, "/")
} else := {"name": base, "tag": "", "hasTag": false}

_implicit(1, false) := true

_implicit(ats, has_tag) := false if {
	not [ats, has_tag] == [1, false]
}

_tag(_, true) := "latest"

_tag(tag, false) := tag

_registry_repository(name) := {"registry": comps[0], "repository": concat("/", array.slice(comps, 1, count(comps)))} if {
	comps := split(name, "/")
	count(comps) > 1
	_is_registry(comps[0])
} else := {"registry": docker_hub, "repository": name}

_is_registry("localhost")

_is_registry(component) if contains(component, ".")

_is_registry(component) if contains(component, ":")

_repository(registry, repository) := concat("/", ["library", repository]) if {
	registry == docker_hub
	not contains(repository, "/")
} else := repository

_registry_re := `^(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$`

_component := `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`

_repository_re := sprintf(`^%s(?:/%s)*$`, [_component, _component])

_tag_re := `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`

_digest_re := `^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`

# _problem is the first thing wrong with a split reference, or "".
_problem(p) := "more than one '@'" if {
	p.atCount > 2
} else := "empty digest after '@'" if {
	p.atCount == 2
	p.digest == ""
} else := "empty tag after ':'" if {
	p.hasTag
	p.tag == ""
} else := "no repository" if {
	p.rawRepository == ""
} else := sprintf("registry %q is not a valid host or host:port", [p.rawRegistry]) if {
	not _valid_registry(p.registry)
} else := sprintf("repository %q is longer than 255 characters", [p.rawRepository]) if {
	count(p.rawRepository) > 255
} else := sprintf("repository %q does not match the distribution grammar (lower-case letters, digits and single separators '.', '_', '__' or '-' in path components separated by single slashes)", [p.rawRepository]) if {
	not regex.match(_repository_re, p.rawRepository)
} else := sprintf("tag %q is not valid (up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-')", [p.tag]) if {
	p.hasTag
	not regex.match(_tag_re, p.tag)
} else := sprintf("digest %q is not valid (sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex>, lower-case)", [p.digest]) if {
	p.atCount == 2
	not regex.match(_digest_re, p.digest)
} else := ""

_valid_registry(registry) if {
	regex.match(_registry_re, registry)
	count(regex.replace(registry, `:[0-9]*$`, "")) <= 253
}
