# METADATA
# title: Image attestations
# description: |
#   violations(image, facts, params) requires verified in-toto attestations
#   (facts attestations[], which hold only attestations imagegate verified).
#   Each entry of required names a predicateType and the signers it must come
#   from (see imagegate.lib.signer; required, since anyone can obtain a
#   keyless certificate from the public-good Fulcio), and optional conditions.
#   There must be at least one such attestation, and every one of them must
#   meet the conditions (an old scan that found a vulnerability still counts).
#
#   Conditions:
#   - builderIdPrefix: the SLSA provenance builder id must start with it:
#     predicate.runDetails.builder.id (https://slsa.dev/provenance/v1) or
#     predicate.builder.id (https://slsa.dev/provenance/v0.2). End it at a
#     boundary ("…/generator_container_slsa3.yml@refs/tags/v").
#   - maxSeverity: no vulnerability more severe than this; one of none,
#     unknown, negligible, low, medium, high, critical (none: no
#     vulnerability at all). Severities are compared case-insensitively;
#     unrecognised ones count as unknown.
#   - deniedCVEs: none of these vulnerability ids (case-insensitive; Grype's
#     relatedVulnerabilities ids count too).
#
#   Vulnerability predicates follow cosign's vuln attestation
#   (https://cosign.sigstore.dev/attestation/vuln/v1), whose
#   predicate.scanner.result is the scanner's own JSON report. Two reports
#   are read:
#   - Trivy JSON (trivy image --format cosign-vuln, or --format json):
#     result.Results[].Vulnerabilities[] with VulnerabilityID and Severity;
#   - Grype JSON (grype -o json): result.matches[] with vulnerability.id,
#     vulnerability.severity and relatedVulnerabilities[].id.
#   A vulnerability condition on a predicate in neither shape, or one imagegate
#   omitted for size (predicate.imagegateOmitted), is a violation.
#
#   scope (per requirement) is as in the signature rule: "index" (default),
#   "platforms" (every platform manifest) or "any". Without facts (null)
#   every image is a violation.
# related_resources:
#   - ref: https://github.com/sigstore/cosign/blob/main/specs/COSIGN_VULN_ATTESTATION_SPEC.md
#     description: cosign vulnerability attestation predicate
#   - ref: https://slsa.dev/spec/v1.0/provenance
#     description: SLSA provenance v1 (runDetails.builder.id)
#   - ref: https://slsa.dev/spec/v0.2/provenance
#     description: SLSA provenance v0.2 (builder.id)
#   - ref: https://trivy.dev/latest/docs/supply-chain/attestation/vuln/
#     description: Trivy's cosign-vuln output
# custom:
#   severity: high
#   parameters:
#     type: object
#     required: [required]
#     properties:
#       required:
#         type: array
#         minItems: 1
#         items:
#           type: object
#           required: [predicateType, signers]
#           properties:
#             predicateType: {type: string, minLength: 1, description: 'e.g. https://slsa.dev/provenance/v1, https://cosign.sigstore.dev/attestation/vuln/v1'}
#             signers:
#               type: array
#               minItems: 1
#               items:
#                 type: object
#                 description: 'a named key {key}, or a keyless identity {issuer, subject | subjectRegExp, extensions}; checked by imagegate.lib.signer.problems'
#                 properties:
#                   key: {type: string, description: 'name under trust.keys'}
#                   issuer: {type: string, description: 'OIDC issuer, exact'}
#                   subject: {type: string, description: 'certificate subject (SAN), exact'}
#                   subjectRegExp: {type: string, description: 'certificate subject (SAN), anchored RE2'}
#                   extensions:
#                     type: object
#                     additionalProperties: {type: string}
#                     description: Fulcio extensions that must have exactly these values
#             scope: {type: string, enum: [index, platforms, any], default: index}
#             conditions:
#               type: object
#               properties:
#                 builderIdPrefix: {type: string, minLength: 1}
#                 maxSeverity: {type: string, enum: [none, unknown, negligible, low, medium, high, critical]}
#                 deniedCVEs: {type: array, items: {type: string}}
package imagegate.lib.attestation

import data.imagegate.lib.signer

_scopes := {"index", "platforms", "any"}

_requirement_fields := {"predicateType", "signers", "scope", "conditions"}

_condition_fields := {"builderIdPrefix", "maxSeverity", "deniedCVEs"}

_severity_rank := {
	"none": -1,
	"unknown": 0,
	"negligible": 1,
	"low": 2,
	"medium": 3,
	"high": 4,
	"critical": 5,
}

_max_listed := 10

# violations(image, facts, params) is the set of attestation messages for image.
violations(image, facts, params) := msgs if {
	p := _params(params)
	msgs := _violations(image, facts, p)
}

# problems(params) is the set of what is wrong with params: empty when the
# parameters are valid.
problems(params) := _problems(_params(params))

# prepare(params) is the form of params checked takes.
prepare(params) := _params(params)

# checked(image, facts, prepared) is violations(image, facts, params) for
# prepared := prepare(params) of parameters problems accepts: it skips the
# parameter checks, which a caller evaluating many images makes once (the
# bundled ImageReview policy).
checked(image, facts, prepared) := _checked(image, facts, prepared)

_params(params) := params if {
	is_object(params)
} else := {}

_violations(image, facts, p) := {sprintf("attestation: image %q cannot be checked: %s; fix the attestation parameters", [image, problem]) |
	some problem in _problems(p)
} if {
	count(_problems(p)) > 0
} else := _checked(image, facts, p)

_checked(image, facts, p) := {sprintf("attestation: image %q has no facts, so its attestations cannot be checked", [image])} if {
	not is_object(facts)
} else := {msg |
	some req in p.required
	some msg in _requirement_violations(image, facts, req)
}

# Parameters.

_problems(p) := {"required must be a non-empty list of required attestations"} if {
	not _non_empty_array(object.get(p, "required", null))
} else := {msg |
	some i, req in p.required
	some msg in _requirement_problems(req, sprintf("required[%d]", [i]))
}

_non_empty_array(x) if {
	is_array(x)
	count(x) > 0
}

_requirement_problems(req, where) := {sprintf("%s must be an object with predicateType and signers", [where])} if {
	not is_object(req)
} else := (_field_problems(req, where) | signer.problems(object.get(req, "signers", null), sprintf("%s.signers", [where]))) | _condition_problems(_conditions(req), where)

_field_problems(req, where) := ({sprintf("%s has unknown fields %v (known: predicateType, signers, scope, conditions)", [where, sort(unknown)]) |
	unknown := {k | some k, _ in req} - _requirement_fields
	count(unknown) > 0
} | {sprintf("%s.predicateType must be a non-empty string", [where]) |
	not _non_empty_string(object.get(req, "predicateType", null))
}) | {sprintf("%s.scope must be \"index\", \"platforms\" or \"any\", not %s", [where, _show(req.scope)]) |
	not _scope(req) in _scopes
}

_non_empty_string(x) if {
	is_string(x)
	x != ""
}

_condition_problems(c, where) := {sprintf("%s.conditions must be an object", [where])} if {
	not is_object(c)
} else := (({sprintf("%s.conditions has unknown fields %v (known: builderIdPrefix, maxSeverity, deniedCVEs)", [where, sort(unknown)]) |
	unknown := {k | some k, _ in c} - _condition_fields
	count(unknown) > 0
} | {sprintf("%s.conditions.builderIdPrefix must be a non-empty string", [where]) |
	"builderIdPrefix" in object.keys(c)
	not _non_empty_string(c.builderIdPrefix)
}) | {sprintf("%s.conditions.maxSeverity must be one of none, unknown, negligible, low, medium, high, critical, not %s", [where, _show(c.maxSeverity)]) |
	"maxSeverity" in object.keys(c)
	not c.maxSeverity in object.keys(_severity_rank)
}) | {sprintf("%s.conditions.deniedCVEs must be a list of vulnerability ids", [where]) |
	"deniedCVEs" in object.keys(c)
	not _string_list(c.deniedCVEs)
}

_string_list(x) if {
	is_array(x)
	every v in x {
		is_string(v)
	}
}

_scope(req) := object.get(req, "scope", "index") if {
	object.get(req, "scope", null) != null
} else := "index"

_conditions(req) := object.get(req, "conditions", {}) if {
	object.get(req, "conditions", null) != null
} else := {}

# Subjects: the index (or single manifest) and the platforms of an index.

_index(facts) := {
	"platform": "",
	"digest": object.get(facts, "digest", ""),
	"attestations": _list(facts, "attestations"),
	"errors": _list(facts, "verificationErrors"),
}

_platforms(facts) := [{
	"platform": _platform(pl),
	"digest": object.get(pl, "digest", ""),
	"attestations": _list(pl, "attestations"),
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

# One requirement, as its scope decides.

_requirement_violations(image, facts, req) := _subject_violations(image, _index(facts), req) if {
	_scope(req) == "index"
} else := {msg |
	some s in _targets(facts)
	some msg in _subject_violations(image, s, req)
} if {
	_scope(req) == "platforms"
} else := set() if {
	count(_subject_violations(image, _index(facts), req)) == 0
} else := set() if {
	count(_platforms(facts)) > 0
	every s in _platforms(facts) {
		count(_subject_violations(image, s, req)) == 0
	}
} else := {msg |
	some s in array.concat([_index(facts)], _platforms(facts))
	some msg in _subject_violations(image, s, req)
}

_targets(facts) := _platforms(facts) if {
	count(_platforms(facts)) > 0
} else := [_index(facts)]

_subject_violations(image, subject, req) := {_missing(image, subject, req)} if {
	count(_candidates(subject, req)) == 0
} else := {msg |
	some a in _candidates(subject, req)
	some msg in _condition_violations(sprintf("attestation: %s has a %q attestation by %s", [_who(image, subject), req.predicateType, signer.describe(a.signer)]), object.get(a, "predicate", {}), _conditions(req))
}

_candidates(subject, req) := {a |
	some a in subject.attestations
	a.predicateType == req.predicateType
	some m in req.signers
	signer.matches(m, a.signer)
}

_missing(image, subject, req) := sprintf("attestation: %s has no verified %q attestation from the required signers (%s)%s; verified attestations: %s; verification errors: %s; attest it (cosign attest --type …) with one of the required signers", [
	_who(image, subject),
	req.predicateType,
	signer.describe_matchers(req.signers),
	_scope_note(_scope(req)),
	_found(subject.attestations),
	_errors(subject.errors),
])

_scope_note("any") := " (scope \"any\": on the index or on every platform)"

_scope_note(scope) := "" if scope != "any"

_found(attestations) := "none" if {
	count(attestations) == 0
} else := concat("; ", sort({sprintf("%q by %s", [object.get(a, "predicateType", ""), signer.describe(a.signer)]) | some a in attestations}))

_errors(errors) := "none" if {
	count(errors) == 0
} else := concat("; ", [sprintf("%q", [e]) | some e in errors])

# Conditions on one attestation's predicate; what names the attestation.

_condition_violations(what, predicate, conditions) := set() if {
	count(conditions) == 0
} else := {sprintf("%s whose predicate was too large to read (%v), so its conditions cannot be checked; raise limits.maxPredicateBytes or attest less", [what, object.get(predicate.imagegateOmitted, "reason", "omitted")])} if {
	is_object(predicate)
	is_object(predicate.imagegateOmitted)
} else := _builder_violations(what, predicate, conditions) | _vulnerability_violations(what, predicate, conditions)

_builder_violations(what, predicate, conditions) := set() if {
	not "builderIdPrefix" in object.keys(conditions)
} else := {sprintf("%s without a builder id (predicate.runDetails.builder.id or predicate.builder.id); build it with a builder starting with %q", [what, conditions.builderIdPrefix])} if {
	not _builder_id(predicate)
} else := {sprintf("%s from builder %q, which does not start with builderIdPrefix %q; build it with the required builder", [what, id, conditions.builderIdPrefix])} if {
	id := _builder_id(predicate)
	not startswith(id, conditions.builderIdPrefix)
} else := set()

# SLSA v1, then v0.2.
_builder_id(predicate) := predicate.runDetails.builder.id if {
	is_string(predicate.runDetails.builder.id)
} else := predicate.builder.id if {
	is_string(predicate.builder.id)
}

_vulnerability_violations(what, predicate, conditions) := set() if {
	count(object.keys(conditions) & {"maxSeverity", "deniedCVEs"}) == 0
} else := {sprintf("%s without scan results imagegate can read (predicate.scanner.result with Trivy Results[].Vulnerabilities[] or Grype matches[]); attest a Trivy or Grype JSON report", [what])} if {
	not _vulnerabilities(predicate)
} else := _severity_violations(what, _vulnerabilities(predicate), conditions) | _denied_violations(what, _vulnerabilities(predicate), conditions)

_severity_violations(what, vulns, conditions) := {sprintf("%s reporting %d vulnerabilities above maxSeverity %q: %s; update the affected packages and rebuild", [what, count(above), conditions.maxSeverity, _list_ids(above)])} if {
	above := {sprintf("%s (%s)", [v.id, v.severity]) | some v in vulns; _severity_rank[v.severity] > _severity_rank[conditions.maxSeverity]}
	count(above) > 0
} else := set()

_denied_violations(what, vulns, conditions) := {sprintf("%s reporting denied vulnerabilities %s; update the affected packages and rebuild", [what, _list_ids(found)])} if {
	denied := {upper(id) | some id in object.get(conditions, "deniedCVEs", [])}
	found := {v.id | some v in vulns; some id in array.concat([v.id], v.aliases); upper(id) in denied}
	count(found) > 0
} else := set()

_list_ids(ids) := concat(", ", sorted) if {
	sorted := sort(ids)
	count(sorted) <= _max_listed
} else := sprintf("%s and %d more", [concat(", ", array.slice(sort(ids), 0, _max_listed)), count(ids) - _max_listed])

# _vulnerabilities is the set of {id, severity, aliases} in a Trivy or Grype
# report; undefined for any other predicate.
_vulnerabilities(predicate) := {{"id": object.get(v, "VulnerabilityID", "(no id)"), "severity": _severity(v), "aliases": []} |
	some r in _list(_result(predicate), "Results")
	some v in _list(r, "Vulnerabilities")
} if {
	count(object.keys(_result(predicate)) & {"SchemaVersion", "Results"}) > 0
} else := {{"id": object.get(vuln, "id", "(no id)"), "severity": _severity(vuln), "aliases": [id | some rv in _list(m, "relatedVulnerabilities"); id := rv.id; is_string(id)]} |
	some m in _list(_result(predicate), "matches")
	vuln := object.get(m, "vulnerability", {})
} if {
	"matches" in object.keys(_result(predicate))
}

_result(predicate) := predicate.scanner.result if {
	is_object(predicate.scanner.result)
}

# Trivy writes "Severity": "HIGH", Grype "severity": "High".
_severity(v) := s if {
	s := lower(object.get(v, "Severity", object.get(v, "severity", "unknown")))
	_severity_rank[s] >= 0
} else := "unknown"

# _show writes a parameter value for messages: strings quoted, others as JSON.
_show(x) := sprintf("%q", [x]) if {
	is_string(x)
} else := sprintf("%v", [x])
