# METADATA
# title: Image pinning
# description: |
#   violations(image, facts, params) checks how an image reference is pinned,
#   from the reference alone (facts are not read and may be null):
#
#   - the "latest" tag, written or implied by a reference with neither tag nor
#     digest, is refused unless allowLatest;
#   - a reference without a digest is refused when requireDigest (the
#     default): a tag can move between admission and pull;
#   - a digest without a tag (repo@sha256:…) is refused unless allowUntagged:
#     repo:tag@sha256:… says what the image is, and lets the freshness rule
#     tell when the tag has moved on;
#   - tagPattern, when set, must match the whole tag (anchored RE2), written
#     or implied.
#
#   An invalid reference is a violation.
# related_resources:
#   - ref: https://kubernetes.io/docs/concepts/containers/images/#image-names
#     description: Kubernetes image names, tags and digests
#   - ref: https://github.com/open-policy-agent/gatekeeper-library/tree/master/library/general/imagedigests
#     description: gatekeeper-library's imagedigests
# custom:
#   severity: high
#   parameters:
#     type: object
#     properties:
#       allowLatest: {type: boolean, default: false, description: 'accept the "latest" tag, written or implied'}
#       requireDigest: {type: boolean, default: true, description: 'require an @sha256:… digest'}
#       allowUntagged: {type: boolean, default: false, description: 'accept repo@digest without a tag'}
#       tagPattern: {type: string, description: 'anchored RE2 every tag must match'}
package imagegate.lib.pinning

import data.imagegate.lib.reference

# violations(image, facts, params) is the set of pinning messages for image.
violations(image, _, params) := msgs if {
	ref := reference.parse(image)
	p := _params(params)
	msgs := _violations(image, ref, p)
}

# problems(params) is the set of what is wrong with params: empty when the
# parameters are valid.
problems(params) := _problems(_params(params))

# prepare(params) is params with every default filled in, the form checked
# takes.
prepare(params) := {
	"allowLatest": _flag(p, "allowLatest"),
	"requireDigest": _flag(p, "requireDigest"),
	"allowUntagged": _flag(p, "allowUntagged"),
	"tagPattern": object.get(p, "tagPattern", null),
} if {
	p := _params(params)
}

# checked(image, facts, prepared) is violations(image, facts, params) for
# prepared := prepare(params) of parameters problems accepts: it skips the
# parameter checks, which a caller evaluating many images makes once (the
# bundled ImageReview policy).
checked(image, _, prepared) := _checked(image, reference.parse(image), prepared)

_params(params) := params if {
	is_object(params)
} else := {}

_flags := {"allowLatest": false, "requireDigest": true, "allowUntagged": false}

_flag(p, key) := object.get(p, key, _flags[key]) if {
	object.get(p, key, null) != null
} else := _flags[key]

_problems(p) := {sprintf("%s must be true or false", [key]) |
	some key, _ in _flags
	not is_boolean(_flag(p, key))
} | {sprintf("tagPattern %s is not a valid regular expression", [_show(pattern)]) |
	pattern := object.get(p, "tagPattern", null)
	pattern != null
	not _valid_pattern(pattern)
}

_valid_pattern(pattern) if {
	is_string(pattern)
	regex.is_valid(pattern)
}

_violations(image, ref, p) := {sprintf("pinning: image %q is not a valid image reference: %s; fix the image name", [image, ref.error])} if {
	not ref.valid
} else := {sprintf("pinning: image %q cannot be checked: %s; fix the pinning parameters", [image, problem]) |
	some problem in _problems(p)
} if {
	count(_problems(p)) > 0
} else := _checked(image, ref, prepare(p))

_checked(image, ref, p) := {sprintf("pinning: image %q is not a valid image reference: %s; fix the image name", [image, ref.error])} if {
	not ref.valid
} else := ((_latest(image, ref, p) | _digest(image, ref, p)) | _untagged(image, ref, p)) | _tag_pattern(image, ref, p)

_latest(image, ref, p) := {sprintf("pinning: image %q has neither a tag nor a digest, so it means the \"latest\" tag; pin a version tag and a digest", [image])} if {
	not p.allowLatest
	ref.implicitTag
} else := {sprintf("pinning: image %q uses the \"latest\" tag; pin a version tag and a digest", [image])} if {
	not p.allowLatest
	ref.tag == "latest"
} else := set()

_digest(image, ref, p) := {sprintf("pinning: image %q is not pinned to a digest, and a tag can move between admission and pull; pin it as repo:tag@sha256:…", [image])} if {
	p.requireDigest
	ref.digest == ""
} else := set()

_untagged(image, ref, p) := {sprintf("pinning: image %q is pinned to a digest but names no tag; write it as repo:tag@digest so the version is visible and freshness can be checked", [image])} if {
	not p.allowUntagged
	ref.digest != ""
	ref.tag == ""
} else := set()

_tag_pattern(image, ref, p) := {sprintf("pinning: image %q has tag %q, which does not match tagPattern %q; use a tag of that form", [image, ref.tag, p.tagPattern])} if {
	is_string(p.tagPattern)
	ref.tag != ""
	not regex.match(sprintf("^(?:%s)$", [p.tagPattern]), ref.tag)
} else := set()

# _show writes a parameter value for messages: strings quoted, others as JSON.
_show(x) := sprintf("%q", [x]) if {
	is_string(x)
} else := sprintf("%v", [x])
