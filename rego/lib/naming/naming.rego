# METADATA
# title: Image naming
# description: |
#   violations(image, facts, params) checks an image's "registry/repository"
#   (normalised as imagegate's facts name it: lower-case registry, Docker Hub
#   as docker.io/library/…) against regular expressions. Every pattern is
#   anchored: it must match the whole name, as if written ^(?:pattern)$, so
#   "ghcr\\.io/acme/.*" does not match "evil.example/ghcr.io/acme/x" or
#   "ghcr.io.evil.example/acme/x". Escape the dots of host names. Patterns are
#   RE2 and must each be a valid expression on their own.
#
#   - allowedRepositories: when non-empty, the name must match one of them;
#   - deniedRepositories: the name must match none of them.
#
#   An invalid reference is a violation. facts are not read (may be null).
# related_resources:
#   - ref: https://github.com/google/re2/wiki/Syntax
#     description: RE2 syntax
#   - ref: https://github.com/open-policy-agent/gatekeeper-library/tree/master/library/general/allowedrepos
#     description: gatekeeper-library's prefix-based allowedrepos, which this generalises
# custom:
#   severity: high
#   parameters:
#     type: object
#     properties:
#       allowedRepositories:
#         type: array
#         items: {type: string}
#         description: anchored RE2 patterns for "registry/repository"; empty or absent allows any name
#       deniedRepositories:
#         type: array
#         items: {type: string}
#         description: anchored RE2 patterns for "registry/repository" that are refused
package imagegate.lib.naming

import data.imagegate.lib.reference

# violations(image, facts, params) is the set of naming messages for image.
violations(image, _, params) := msgs if {
	ref := reference.parse(image)
	p := _params(params)
	msgs := (_reference_violations(image, ref) | _param_violations(image, p)) | _name_violations(image, ref, p)
}

# problems(params) is the set of what is wrong with params: empty when the
# parameters are valid.
problems(params) := _param_problems(_params(params))

# prepare(params) is the form of params checked takes.
prepare(params) := _params(params)

# checked(image, facts, prepared) is violations(image, facts, params) for
# prepared := prepare(params) of parameters problems accepts: it skips the
# parameter checks, which a caller evaluating many images makes once (the
# bundled ImageReview policy).
checked(image, _, prepared) := msgs if {
	ref := reference.parse(image)
	msgs := _reference_violations(image, ref) | _name_checks(image, ref, prepared)
}

_params(params) := params if {
	is_object(params)
} else := {}

_list(p, key) := object.get(p, key, []) if {
	object.get(p, key, null) != null
} else := []

_reference_violations(image, ref) := {sprintf("naming: image %q is not a valid image reference: %s; fix the image name", [image, ref.error])} if {
	not ref.valid
} else := set()

_param_violations(image, p) := {sprintf("naming: image %q cannot be checked: %s; fix the naming parameters", [image, problem]) |
	some problem in _param_problems(p)
}

_param_problems(p) := {sprintf("%s must be a list of regular expressions", [key]) |
	some key in ["allowedRepositories", "deniedRepositories"]
	not is_array(_list(p, key))
} | {sprintf("%s[%d] %s is not a valid regular expression", [key, i, _show(pattern)]) |
	some key in ["allowedRepositories", "deniedRepositories"]
	some i, pattern in _array(_list(p, key))
	not _valid_pattern(pattern)
}

_array(x) := x if {
	is_array(x)
} else := []

# A pattern must compile on its own, so that wrapping it cannot change its
# meaning: "a)|(b" would otherwise escape the anchors.
_valid_pattern(pattern) if {
	is_string(pattern)
	regex.is_valid(pattern)
}

_matches(pattern, name) if regex.match(sprintf("^(?:%s)$", [pattern]), name)

_name_violations(image, ref, p) := set() if {
	not ref.valid
} else := set() if {
	count(_param_problems(p)) > 0
} else := _name_checks(image, ref, p)

_name_checks(image, ref, p) := set() if {
	not ref.valid
} else := {sprintf("naming: image %q (%s) matches none of allowedRepositories %v; use an image from an allowed repository or add a pattern for it", [image, name, allowed]) |
	name := reference.name(ref)
	allowed := _list(p, "allowedRepositories")
	count(allowed) > 0
	not _any_matches(allowed, name)
} | {sprintf("naming: image %q (%s) matches deniedRepositories pattern %q; use another image", [image, name, pattern]) |
	name := reference.name(ref)
	some pattern in _list(p, "deniedRepositories")
	_matches(pattern, name)
}

_any_matches(patterns, name) if {
	some pattern in patterns
	_matches(pattern, name)
}

# _show writes a parameter value for messages: strings quoted, others as JSON.
_show(x) := sprintf("%q", [x]) if {
	is_string(x)
} else := sprintf("%v", [x])
