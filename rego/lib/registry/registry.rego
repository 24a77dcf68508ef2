# METADATA
# title: Image registry allowlist
# description: |
#   violations(image, facts, params) admits an image only from an allowed
#   registry or repository prefix, from the reference alone (facts are not
#   read and may be null):
#
#   - allowedRegistries: registries matched exactly, as host or host:port
#     ("registry.corp" does not allow "registry.corp:5000"); "*" allows any.
#     Entries are normalised like references: lower-case, and Docker Hub's
#     aliases (index.docker.io, registry-1.docker.io) as "docker.io".
#   - allowedRepositoryPrefixes: "registry/repository" prefixes that end at a
#     path boundary: "ghcr.io/acme" and "ghcr.io/acme/" allow ghcr.io/acme and
#     ghcr.io/acme/app but not ghcr.io/acme-evil/app; the registry part is
#     normalised as above. Docker Hub official images are
#     "docker.io/library/…".
#
#   An image passes when either list allows it. With neither list set,
#   nothing is allowed (fail closed), as imagegate's registries.allow.
#   An invalid reference is a violation.
# related_resources:
#   - ref: https://github.com/open-policy-agent/gatekeeper-library/tree/master/library/general/allowedrepos
#     description: gatekeeper-library's allowedrepos (plain string prefixes, which this rule bounds at '/')
# custom:
#   severity: high
#   parameters:
#     type: object
#     properties:
#       allowedRegistries:
#         type: array
#         items: {type: string, minLength: 1}
#         description: host or host:port, matched exactly after normalisation; "*" for any
#       allowedRepositoryPrefixes:
#         type: array
#         items: {type: string, minLength: 1}
#         description: registry/repository prefixes ending at a path boundary
package imagegate.lib.registry

import data.imagegate.lib.reference

# violations(image, facts, params) is the set of registry messages for image.
violations(image, _, params) := msgs if {
	ref := reference.parse(image)
	p := _params(params)
	msgs := _violations(image, ref, p)
}

# problems(params) is the set of what is wrong with params: empty when the
# parameters are valid.
problems(params) := _problems(_params(params))

# prepare(params) is the form of params checked takes: both lists with
# their registries normalised once.
prepare(params) := {
	"allowedRegistries": registries,
	"allowedRepositoryPrefixes": prefixes,
	"any": "*" in registries,
	"registries": {reference.normalize_registry(r) | some r in registries},
	"prefixes": [_normalize_prefix(prefix) | some prefix in prefixes],
} if {
	p := _params(params)
	registries := _list(p, "allowedRegistries")
	prefixes := _list(p, "allowedRepositoryPrefixes")
}

# checked(image, facts, prepared) is violations(image, facts, params) for
# prepared := prepare(params) of parameters problems accepts: it skips the
# parameter checks, which a caller evaluating many images makes once (the
# bundled ImageReview policy).
checked(image, _, prepared) := _checked(image, reference.parse(image), prepared)

_params(params) := params if {
	is_object(params)
} else := {}

_list(p, key) := object.get(p, key, []) if {
	object.get(p, key, null) != null
} else := []

_problems(p) := {sprintf("%s must be a list of strings", [key]) |
	some key in ["allowedRegistries", "allowedRepositoryPrefixes"]
	not _string_list(_list(p, key))
} | {sprintf("%s[%d] is empty", [key, i]) |
	some key in ["allowedRegistries", "allowedRepositoryPrefixes"]
	some i, entry in _list(p, key)
	entry == ""
}

_string_list(x) if {
	is_array(x)
	every v in x {
		is_string(v)
	}
}

_violations(image, ref, p) := {sprintf("registry: image %q is not a valid image reference: %s; fix the image name", [image, ref.error])} if {
	not ref.valid
} else := {sprintf("registry: image %q cannot be checked: %s; fix the registry parameters", [image, problem]) |
	some problem in _problems(p)
} if {
	count(_problems(p)) > 0
} else := _checked(image, ref, prepare(p))

_checked(image, ref, p) := {sprintf("registry: image %q is not a valid image reference: %s; fix the image name", [image, ref.error])} if {
	not ref.valid
} else := set() if {
	_allowed(ref, p)
} else := {sprintf("registry: image %q is from %q, which is not allowed (allowedRegistries %v, allowedRepositoryPrefixes %v); use an image from an allowed registry, or allow %q", [image, reference.name(ref), p.allowedRegistries, p.allowedRepositoryPrefixes, ref.registry])}

_allowed(_, p) if p.any

_allowed(ref, p) if ref.registry in p.registries

_allowed(ref, p) if {
	some prefix in p.prefixes
	_under(reference.name(ref), prefix)
}

# _normalize_prefix normalises the registry part and drops a trailing '/'.
_normalize_prefix(prefix) := concat("/", array.concat([reference.normalize_registry(parts[0])], array.slice(parts, 1, count(parts)))) if {
	parts := split(trim_right(prefix, "/"), "/")
}

_under(name, prefix) if name == prefix

_under(name, prefix) if startswith(name, concat("", [prefix, "/"]))
