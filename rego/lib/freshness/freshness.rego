# METADATA
# title: Digest freshness
# description: |
#   violations(image, facts, params) applies to repo:tag@digest references:
#   the digest pins what runs, the tag says what it is meant to be. When the
#   tag now points elsewhere (facts tagDigest, set for such keys, differs from
#   the pinned digest), the pinned image is stale: the tag has been rebuilt,
#   typically with security fixes.
#
#   No violation when tagDigest is empty (imagegate could not resolve the tag:
#   it may have been deleted) or for references without both a tag and a
#   digest. Facts are required for repo:tag@digest references; without them
#   (null) those are violations. Disabled with enabled: false.
# related_resources:
#   - ref: https://github.com/google/go-containerregistry/blob/main/cmd/crane/doc/crane_digest.md
#     description: crane digest, to look up a tag's current digest
# custom:
#   severity: low
#   parameters:
#     type: object
#     properties:
#       enabled: {type: boolean, default: true}
package imagegate.lib.freshness

import data.imagegate.lib.reference

# violations(image, facts, params) is the set of freshness messages for image.
violations(image, facts, params) := msgs if {
	ref := reference.parse(image)
	msgs := _violations(image, ref, facts, _params(params))
}

# problems(params) is the set of what is wrong with params: empty when the
# parameters are valid.
problems(params) := {sprintf("enabled must be true or false, not %s", [_show(p.enabled)])} if {
	p := _params(params)
	not is_boolean(object.get(p, "enabled", true))
} else := set()

# prepare(params) is the form of params checked takes.
prepare(params) := _params(params)

# checked(image, facts, prepared) is violations(image, facts, params) for
# prepared := prepare(params) of parameters problems accepts: it skips the
# parameter checks, which a caller evaluating many images makes once (the
# bundled ImageReview policy).
checked(image, facts, prepared) := _violations(image, reference.parse(image), facts, prepared)

_params(params) := params if {
	is_object(params)
} else := {}

_violations(image, ref, facts, p) := {sprintf("freshness: image %q cannot be checked: enabled must be true or false, not %s; fix the freshness parameters", [image, _show(p.enabled)])} if {
	not is_boolean(object.get(p, "enabled", true))
} else := set() if {
	object.get(p, "enabled", true) == false
} else := set() if {
	not _tag_and_digest(ref)
} else := {sprintf("freshness: image %q has no facts, so whether tag %q still points to %s cannot be checked", [image, ref.tag, ref.digest])} if {
	not is_object(facts)
} else := {sprintf("freshness: image %q pins %s, but tag %q now points to %s; update the digest to the tag's current one (or use the digest mutation)", [image, pinned, ref.tag, facts.tagDigest])} if {
	pinned := _pinned(facts, ref)
	object.get(facts, "tagDigest", "") != ""
	facts.tagDigest != pinned
} else := set()

_tag_and_digest(ref) if {
	ref.valid
	ref.tag != ""
	ref.digest != ""
}

_pinned(facts, ref) := facts.digest if {
	object.get(facts, "digest", "") != ""
} else := ref.digest

# _show writes a parameter value for messages: strings quoted, others as JSON.
_show(x) := sprintf("%q", [x]) if {
	is_string(x)
} else := sprintf("%v", [x])
