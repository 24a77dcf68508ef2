# METADATA
# title: Image signatures
# description: |
#   violations(image, facts, params) requires verified signatures (facts
#   signatures[], which hold only signatures imagegate verified) from the
#   configured signers. See imagegate.lib.signer for the signer shapes: a
#   named key, or a keyless issuer (exact) with a subject (exact) or
#   subjectRegExp (anchored) and optional Fulcio extensions (exact).
#
#   - count: at least this many distinct signers of the list must have signed
#     (two entries matched by one identity count once). Default 1.
#   - scope: for a multi-platform index, where signatures must be.
#     "index" (default): on the digest the reference resolves to (cosign sign
#     of the index). "platforms": every platform manifest must itself be
#     signed (for a single-platform image: the manifest). "any": either.
#
#   When the signers are not satisfied, the message lists the verified signers
#   found and facts verificationErrors, so users see why (e.g. signed by a key
#   not in the config). Without facts (null) every image is a violation.
# related_resources:
#   - ref: https://docs.sigstore.dev/cosign/signing/signing_with_containers/
#     description: cosign sign
#   - ref: https://docs.sigstore.dev/policy-controller/overview/
#     description: policy-controller's ClusterImagePolicy authorities, which this rule can replace
# custom:
#   severity: high
#   parameters:
#     type: object
#     required: [signers]
#     properties:
#       signers:
#         type: array
#         minItems: 1
#         items:
#           type: object
#           description: 'a named key {key}, or a keyless identity {issuer, subject | subjectRegExp, extensions}; checked by imagegate.lib.signer.problems'
#           properties:
#             key: {type: string, description: 'name under trust.keys'}
#             issuer: {type: string, description: 'OIDC issuer, exact'}
#             subject: {type: string, description: 'certificate subject (SAN), exact'}
#             subjectRegExp: {type: string, description: 'certificate subject (SAN), anchored RE2'}
#             extensions:
#               type: object
#               additionalProperties: {type: string}
#               description: Fulcio extensions that must have exactly these values
#       count: {type: integer, minimum: 1, default: 1, description: 'distinct signers of the list required'}
#       scope: {type: string, enum: [index, platforms, any], default: index}
package imagegate.lib.signature

import data.imagegate.lib.signer

_scopes := {"index", "platforms", "any"}

# violations(image, facts, params) is the set of signature messages for image.
violations(image, facts, params) := msgs if {
	p := _params(params)
	msgs := _violations(image, facts, p)
}

# problems(params) is the set of what is wrong with params: empty when the
# parameters are valid.
problems(params) := _problems(_params(params))

# prepare(params) is params with every default filled in, the form checked
# takes.
prepare(params) := object.union(p, {"count": _count(p), "scope": _scope(p), "matchers": signer.prepare(p.signers)}) if {
	p := _params(params)
}

# checked(image, facts, prepared) is violations(image, facts, params) for
# prepared := prepare(params) of parameters problems accepts: it skips the
# parameter checks, which a caller evaluating many images makes once (the
# bundled ImageReview policy).
checked(image, facts, prepared) := _checked(image, facts, prepared)

_params(params) := params if {
	is_object(params)
} else := {}

_count(p) := object.get(p, "count", 1) if {
	object.get(p, "count", null) != null
} else := 1

_scope(p) := object.get(p, "scope", "index") if {
	object.get(p, "scope", null) != null
} else := "index"

_problems(p) := (signer.problems(object.get(p, "signers", null), "signers") | {msg |
	some msg in _count_problems(_count(p), object.get(p, "signers", []))
}) | {sprintf("scope must be \"index\", \"platforms\" or \"any\", not %s", [_show(_scope(p))]) |
	not _scope(p) in _scopes
}

_count_problems(n, signers) := {sprintf("count must be a whole number, 1 or more, not %s", [_show(n)])} if {
	not _positive_integer(n)
} else := {sprintf("count %d is more than the %d signers listed, so no image could pass", [n, count(signers)])} if {
	is_array(signers)
	count(signers) > 0
	n > count(signers)
} else := set()

_positive_integer(n) if {
	is_number(n)
	n >= 1
	n == floor(n)
}

_violations(image, facts, p) := {sprintf("signature: image %q cannot be checked: %s; fix the signature parameters", [image, problem]) |
	some problem in _problems(p)
} if {
	count(_problems(p)) > 0
} else := _checked(image, facts, prepare(p))

_checked(image, facts, p) := {sprintf("signature: image %q has no facts, so its signatures cannot be checked", [image])} if {
	not is_object(facts)
} else := {_message(image, subject, p) | some subject in _failing(facts, p)}

# _failing are the subjects (index or platforms) whose signatures fall short,
# as the scope decides.
_failing(facts, p) := [s | some s in [_index(facts)]; _short(s, p)] if {
	p.scope == "index"
} else := [s | some s in _targets(facts); _short(s, p)] if {
	p.scope == "platforms"
} else := [] if {
	not _short(_index(facts), p)
} else := [] if {
	count(_platforms(facts)) > 0
	every s in _platforms(facts) {
		not _short(s, p)
	}
} else := array.concat([_index(facts)], [s | some s in _platforms(facts); _short(s, p)])

_targets(facts) := _platforms(facts) if {
	count(_platforms(facts)) > 0
} else := [_index(facts)]

# One required signer (the default) is satisfied by any matching entry; the
# distinct count (a maximum matching) is only needed for count > 1.
_short(subject, p) if {
	p.count == 1
	not signer.any_prepared_match(p.matchers, subject.entries)
}

_short(subject, p) if {
	p.count != 1
	signer.count_distinct(p.signers, subject.entries) < p.count
}

_index(facts) := {
	"platform": "",
	"digest": object.get(facts, "digest", ""),
	"entries": _list(facts, "signatures"),
	"errors": _list(facts, "verificationErrors"),
}

# Children without an image config are not images (imagegate does not look
# for their signatures); a node can only run the others.
_platforms(facts) := [{
	"platform": _platform(pl),
	"digest": object.get(pl, "digest", ""),
	"entries": _list(pl, "signatures"),
	"errors": _list(pl, "verificationErrors"),
} |
	some pl in _list(facts, "platforms")
	is_object(object.get(pl, "config", null))
]

_list(x, key) := x[key] if {
	is_array(x[key])
} else := []

_platform(pl) := concat("/", [x | some x in [object.get(pl, "os", ""), object.get(pl, "architecture", ""), object.get(pl, "variant", "")]; x != ""])

_who(image, subject) := sprintf("image %q", [image]) if {
	subject.platform == ""
} else := sprintf("image %q platform %s (%s)", [image, subject.platform, subject.digest])

_message(image, subject, p) := sprintf("signature: %s %s (%s)%s; verified signatures: %s; verification errors: %s; sign it with %s", [
	_who(image, subject),
	_shortfall(signer.count_distinct(p.signers, subject.entries), _count(p)),
	signer.describe_matchers(p.signers),
	_scope_note(_scope(p)),
	_found(subject.entries),
	_errors(subject.errors),
	_fix(_count(p)),
])

_shortfall(_, 1) := "is not signed by any of the required signers"

_shortfall(have, need) := sprintf("is signed by %d distinct required signers, needs %d", [have, need]) if need != 1

_scope_note("any") := " (scope \"any\": the index or every platform must be signed)"

_scope_note(scope) := "" if scope != "any"

_found(entries) := "none" if {
	count(entries) == 0
} else := concat("; ", sort({signer.describe(e.signer) | some e in entries}))

_errors(errors) := "none" if {
	count(errors) == 0
} else := concat("; ", [sprintf("%q", [e]) | some e in errors])

_fix(1) := "one of the required signers"

_fix(n) := sprintf("%d of the required signers", [n]) if n != 1

# _show writes a parameter value for messages: strings quoted, others as JSON.
_show(x) := sprintf("%q", [x]) if {
	is_string(x)
} else := sprintf("%v", [x])
