# METADATA
# title: Signer identities
# description: |
#   Matching verified signers (facts signatures[].signer and
#   attestations[].signer) against the signer lists of the signature and
#   attestation rules. A signer matcher is one of:
#
#   - {"key": "release"}: signed with the public key configured under
#     trust.keys.release;
#   - {"issuer": "https://token.actions.githubusercontent.com",
#      "subject": "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"}
#     or {"issuer": …, "subjectRegExp": "https://github\\.com/acme/.*"}: a
#     keyless (Fulcio) certificate with exactly this OIDC issuer and a subject
#     equal to subject or matching subjectRegExp, which is anchored (it must
#     match the whole subject);
#   - optionally with "extensions": {"githubWorkflowRepository": "acme/app", …}:
#     each listed Fulcio extension must be present with exactly this value.
#
#   Keyless matchers must name a subject: every certificate that chains to a
#   configured trusted root is a verified signer, and the public-good Fulcio
#   issues certificates to anyone.
# related_resources:
#   - ref: https://docs.sigstore.dev/cosign/verifying/verify/
#     description: cosign's keyless identity flags (--certificate-identity, --certificate-oidc-issuer)
#   - ref: https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md
#     description: Fulcio certificate extensions (githubWorkflowRepository, …)
# custom:
#   signer:
#     type: object
#     description: 'a named key {key}, or a keyless identity {issuer, subject | subjectRegExp, extensions}; checked by problems()'
#     properties:
#       key: {type: string, description: 'name under trust.keys'}
#       issuer: {type: string, description: 'OIDC issuer, exact'}
#       subject: {type: string, description: 'certificate subject (SAN), exact'}
#       subjectRegExp: {type: string, description: 'certificate subject (SAN), anchored RE2'}
#       extensions:
#         type: object
#         additionalProperties: {type: string}
#         description: Fulcio extensions that must have exactly these values
package imagegate.lib.signer

_fields := {"key", "issuer", "subject", "subjectRegExp", "extensions"}

# max_exact is how many matchers count_distinct handles exactly; beyond it the
# count is an upper bound (see count_distinct).
max_exact := 12

# problems(signers, where) lists what is wrong with a signer list, each naming
# its place as where[i]; empty when the list is usable.
problems(signers, where) := {sprintf("%s must be a non-empty list of signers", [where])} if {
	not _non_empty_array(signers)
} else := {msg |
	some i, m in signers
	some msg in _matcher_problems(m, sprintf("%s[%d]", [where, i]))
}

_non_empty_array(x) if {
	is_array(x)
	count(x) > 0
}

_matcher_problems(m, where) := {sprintf("%s must be an object such as {\"key\": \"release\"} or {\"issuer\": …, \"subject\": …}", [where])} if {
	not is_object(m)
} else := {msg |
	some msg in (_shape_problems(m, where) | _field_problems(m, where))
}

_shape_problems(m, where) := {sprintf("%s has unknown fields %v (known: key, issuer, subject, subjectRegExp, extensions)", [where, sort(unknown)])} if {
	unknown := {k | some k, _ in m} - _fields
	count(unknown) > 0
} else := {sprintf("%s has both key and issuer; a signer is either a key or a keyless identity", [where])} if {
	"key" in object.keys(m)
	"issuer" in object.keys(m)
} else := {sprintf("%s needs key or issuer", [where])} if {
	not "key" in object.keys(m)
	not "issuer" in object.keys(m)
} else := {sprintf("%s: subject, subjectRegExp and extensions apply to keyless signers (issuer), not to a key", [where])} if {
	"key" in object.keys(m)
	count(object.keys(m) & {"subject", "subjectRegExp", "extensions"}) > 0
} else := {sprintf("%s needs subject or subjectRegExp: without one, anyone with a certificate from issuer %s would match", [where, _show(m.issuer)])} if {
	"issuer" in object.keys(m)
	count(object.keys(m) & {"subject", "subjectRegExp"}) == 0
} else := {sprintf("%s has both subject and subjectRegExp; use one", [where])} if {
	"subject" in object.keys(m)
	"subjectRegExp" in object.keys(m)
} else := set()

_field_problems(m, where) := ({msg |
	some field in ["key", "issuer", "subject", "subjectRegExp"]
	field in object.keys(m)
	not _non_empty_string(m[field])
	msg := sprintf("%s.%s must be a non-empty string", [where, field])
} | {msg |
	is_string(m.subjectRegExp)
	not regex.is_valid(m.subjectRegExp)
	msg := sprintf("%s.subjectRegExp %q is not a valid regular expression", [where, m.subjectRegExp])
}) | {msg |
	"extensions" in object.keys(m)
	not _string_map(m.extensions)
	msg := sprintf("%s.extensions must map extension names to strings", [where])
}

_non_empty_string(x) if {
	is_string(x)
	x != ""
}

_string_map(x) if {
	is_object(x)
	every v in x {
		is_string(v)
	}
}

# matches(matcher, signer) holds when a verified signer satisfies a matcher.
matches(m, s) if prepared_matches(_prepare(m), s)

# prepare(matchers) is matchers, as problems accepts them, in the form
# prepared_matches and any_prepared_match take: every field present, the
# subject pattern anchored. A caller matching many signers against the same
# list prepares it once.
prepare(matchers) := [_prepare(m) | some m in matchers]

_prepare(m) := {"kind": "key", "key": m.key} if {
	"key" in object.keys(m)
} else := {
	"kind": "keyless",
	"issuer": object.get(m, "issuer", null),
	"subject": _exact_subject(m),
	"subjectRegExp": _anchored_subject(m),
	"extensions": object.get(m, "extensions", {}),
}

_exact_subject(m) := m.subject if {
	not "subjectRegExp" in object.keys(m)
} else := null

_anchored_subject(m) := sprintf("^(?:%s)$", [m.subjectRegExp]) if {
	not "subject" in object.keys(m)
	is_string(m.subjectRegExp)
} else := null

# prepared_matches(prepared, signer) is matches for one matcher of prepare.
prepared_matches(m, s) if {
	m.kind == "key"
	object.get(s, "kind", "") == "key"
	_non_empty_string(m.key)
	s.key == m.key
}

prepared_matches(m, s) if {
	m.kind == "keyless"
	object.get(s, "kind", "") == "keyless"
	_non_empty_string(m.issuer)
	s.issuer == m.issuer
	_subject_matches(m, object.get(s, "subject", ""))
	exts := object.get(s, "extensions", {})
	every name, want in m.extensions {
		object.get(exts, name, null) == want
	}
}

_subject_matches(m, subject) if {
	_non_empty_string(m.subject)
	subject == m.subject
}

_subject_matches(m, subject) if {
	is_string(m.subjectRegExp)
	regex.match(m.subjectRegExp, subject)
}

# identity(signer) is what makes two signers distinct: the key name, or the
# keyless issuer and subject (extensions such as the workflow commit differ
# from run to run of the same identity).
identity(s) := ["key", s.key] if {
	object.get(s, "kind", "") == "key"
} else := ["keyless", object.get(s, "issuer", ""), object.get(s, "subject", "")]

# any_match(matchers, entries) holds when some matcher matches the signer of
# some entry: count_distinct(matchers, entries) >= 1, without the counting.
any_match(matchers, entries) if any_prepared_match(prepare(matchers), entries)

# any_prepared_match is any_match for prepared := prepare(matchers).
any_prepared_match(prepared, entries) if {
	some m in prepared
	some e in entries
	prepared_matches(m, e.signer)
}

# count_distinct(matchers, entries) is how many matchers can each be given a
# different signer identity among the entries (signatures or attestations)
# that it matches: the size of a maximum matching between matchers and
# identities, by Hall's theorem (the minimum over matcher subsets S of
# |M| - |S| + |N(S)|). Exact for up to max_exact matchers that match
# anything; beyond that, min(|M|, identities), an upper bound.
count_distinct(matchers, entries) := n if {
	edges := _edges(matchers, entries)
	used := sort({i | some [i, _] in edges})
	count(used) <= max_exact
	n := min({_hall_term(used, edges, mask) | some mask in numbers.range(0, bits.lsh(1, count(used)) - 1)})
} else := n if {
	edges := _edges(matchers, entries)
	n := min({count({i | some [i, _] in edges}), count({id | some [_, id] in edges})})
}

_edges(matchers, entries) := {[i, identity(e.signer)] |
	some i, m in matchers
	some e in entries
	matches(m, e.signer)
}

_hall_term(used, edges, mask) := (count(used) - count(subset)) + count(neighbours) if {
	subset := {used[j] | some j in numbers.range(0, count(used) - 1); bits.and(mask, bits.lsh(1, j)) != 0}
	neighbours := {id | some [i, id] in edges; i in subset}
}

# describe(signer) names a verified signer for messages.
describe(s) := sprintf("key %q", [s.key]) if {
	object.get(s, "kind", "") == "key"
} else := sprintf("keyless issuer %q subject %q", [object.get(s, "issuer", ""), object.get(s, "subject", "")])

# describe_matcher(matcher) names a configured signer for messages.
describe_matcher(m) := sprintf("key %q", [m.key]) if {
	"key" in object.keys(m)
} else := concat("", [sprintf("issuer %q ", [m.issuer]), _describe_subject(m), _describe_extensions(object.get(m, "extensions", {}))])

_describe_subject(m) := sprintf("subject %q", [m.subject]) if {
	"subject" in object.keys(m)
} else := sprintf("subject matching %q", [object.get(m, "subjectRegExp", "")])

_describe_extensions(exts) := "" if {
	count(exts) == 0
} else := sprintf(" with %s", [concat(", ", sort([sprintf("%s %q", [k, v]) | some k, v in exts]))])

# describe_matchers(matchers) lists a signer list for messages.
describe_matchers(matchers) := concat("; ", [describe_matcher(m) | some m in matchers])

# _show writes a parameter value for messages: strings quoted, others as JSON.
_show(x) := sprintf("%q", [x]) if {
	is_string(x)
} else := sprintf("%v", [x])
