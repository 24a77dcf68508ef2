package imagegate.lib.signer_test

import data.imagegate.lib.signer

gha := "https://token.actions.githubusercontent.com"

release_wf := "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"

key(name) := {"kind": "key", "key": name}

keyless(issuer, subject, exts) := {"kind": "keyless", "issuer": issuer, "subject": subject, "extensions": exts}

test_matches[desc] if {
	some [desc, m, s] in [
		["key", {"key": "release"}, key("release")],
		["exact subject", {"issuer": gha, "subject": release_wf}, keyless(gha, release_wf, {})],
		["regexp subject", {"issuer": gha, "subjectRegExp": `https://github\.com/acme/.*`}, keyless(gha, release_wf, {})],
		["extension", {"issuer": gha, "subject": release_wf, "extensions": {"githubWorkflowRepository": "acme/app"}}, keyless(gha, release_wf, {"githubWorkflowRepository": "acme/app", "githubWorkflowSha": "abc"})],
		["keyless without extensions field", {"issuer": gha, "subject": release_wf}, {"kind": "keyless", "issuer": gha, "subject": release_wf}],
	]
	signer.matches(m, s)
}

test_does_not_match[desc] if {
	some [desc, m, s] in [
		["other key", {"key": "release"}, key("dev")],
		["key name as keyless subject", {"key": "release"}, keyless(gha, "release", {})],
		["keyless matcher against key", {"issuer": gha, "subject": "release"}, key("release")],
		["other issuer", {"issuer": gha, "subject": release_wf}, keyless("https://accounts.google.com", release_wf, {})],
		["issuer prefix", {"issuer": gha, "subject": release_wf}, keyless(concat("", [gha, ".evil.example"]), release_wf, {})],
		["subject is exact", {"issuer": gha, "subject": release_wf}, keyless(gha, concat("", [release_wf, "x"]), {})],
		["regexp anchored at the end", {"issuer": gha, "subjectRegExp": `https://github\.com/acme/app/.*@refs/heads/main`}, keyless(gha, "https://github.com/acme/app/.github/workflows/x.yml@refs/heads/main-evil", {})],
		["regexp anchored at the start", {"issuer": gha, "subjectRegExp": `https://github\.com/acme/.*`}, keyless(gha, "https://evil.example/https://github.com/acme/x", {})],
		["regexp alternatives stay anchored", {"issuer": gha, "subjectRegExp": `https://github\.com/acme/a|https://github\.com/acme/b`}, keyless(gha, "https://github.com/acme/a-evil", {})],
		["org name prefix", {"issuer": gha, "subjectRegExp": `https://github\.com/acme/.*`}, keyless(gha, "https://github.com/acme-evil/x", {})],
		["extension differs", {"issuer": gha, "subject": release_wf, "extensions": {"githubWorkflowRepository": "acme/app"}}, keyless(gha, release_wf, {"githubWorkflowRepository": "evil/app"})],
		["extension missing", {"issuer": gha, "subject": release_wf, "extensions": {"githubWorkflowRepository": "acme/app"}}, keyless(gha, release_wf, {})],
		["no subject in matcher", {"issuer": gha}, keyless(gha, release_wf, {})],
		["unknown kind", {"key": "release"}, {"kind": "x509", "key": "release"}],
	]
	not signer.matches(m, s)
}

test_problems[desc] if {
	some [desc, signers, want] in [
		["valid", [{"key": "release"}, {"issuer": gha, "subject": "s"}, {"issuer": gha, "subjectRegExp": ".*", "extensions": {"a": "b"}}], set()],
		["not a list", {"key": "release"}, {"signers must be a non-empty list of signers"}],
		["empty", [], {"signers must be a non-empty list of signers"}],
		["null", null, {"signers must be a non-empty list of signers"}],
		["not an object", ["release"], {`signers[0] must be an object such as {"key": "release"} or {"issuer": …, "subject": …}`}],
		["unknown field", [{"key": "release", "subjectRegex": "x"}], {`signers[0] has unknown fields ["subjectRegex"] (known: key, issuer, subject, subjectRegExp, extensions)`}],
		["key and issuer", [{"key": "release", "issuer": gha}], {"signers[0] has both key and issuer; a signer is either a key or a keyless identity"}],
		["neither", [{"subject": "s"}], {"signers[0] needs key or issuer"}],
		["key with subject", [{"key": "release", "subject": "s"}], {"signers[0]: subject, subjectRegExp and extensions apply to keyless signers (issuer), not to a key"}],
		["issuer alone", [{"issuer": gha}], {sprintf("signers[0] needs subject or subjectRegExp: without one, anyone with a certificate from issuer %q would match", [gha])}],
		["issuer with extensions only", [{"issuer": gha, "extensions": {"githubWorkflowRepository": "acme/app"}}], {sprintf("signers[0] needs subject or subjectRegExp: without one, anyone with a certificate from issuer %q would match", [gha])}],
		["subject and regexp", [{"issuer": gha, "subject": "s", "subjectRegExp": "s"}], {"signers[0] has both subject and subjectRegExp; use one"}],
		["empty key", [{"key": ""}], {"signers[0].key must be a non-empty string"}],
		["number issuer", [{"issuer": 1, "subject": "s"}], {"signers[0].issuer must be a non-empty string"}],
		["number issuer alone", [{"issuer": 1}], {"signers[0].issuer must be a non-empty string", "signers[0] needs subject or subjectRegExp: without one, anyone with a certificate from issuer 1 would match"}],
		["bad regexp", [{"issuer": gha, "subjectRegExp": "("}], {`signers[0].subjectRegExp "(" is not a valid regular expression`}],
		["escaping regexp", [{"issuer": gha, "subjectRegExp": "a)|(.*"}], {`signers[0].subjectRegExp "a)|(.*" is not a valid regular expression`}],
		["bad extensions", [{"issuer": gha, "subject": "s", "extensions": {"a": 1}}], {"signers[0].extensions must map extension names to strings"}],
		["second entry", [{"key": "release"}, {"key": 1}], {"signers[1].key must be a non-empty string"}],
	]
	signer.problems(signers, "signers") == want
}

sig(s) := {"format": "bundle", "digest": "sha256:aa", "signer": s}

test_count_distinct[desc] if {
	some [desc, matchers, signers, want] in [
		["none", [{"key": "a"}], [], 0],
		["one key", [{"key": "a"}], [key("a")], 1],
		["same key twice", [{"key": "a"}], [key("a"), key("a")], 1],
		["two keys", [{"key": "a"}, {"key": "b"}], [key("a"), key("b")], 2],
		["unlisted key", [{"key": "a"}, {"key": "b"}], [key("a"), key("c")], 1],
		["one identity matched by two matchers counts once", [{"issuer": gha, "subject": release_wf}, {"issuer": gha, "subjectRegExp": ".*"}], [keyless(gha, release_wf, {})], 1],
		["same identity, different run extensions, counts once", [{"issuer": gha, "subjectRegExp": ".*"}, {"issuer": gha, "subject": release_wf}], [keyless(gha, release_wf, {"githubWorkflowSha": "1"}), keyless(gha, release_wf, {"githubWorkflowSha": "2"})], 1],
		["two identities, overlapping matchers", [{"issuer": gha, "subject": release_wf}, {"issuer": gha, "subjectRegExp": ".*"}], [keyless(gha, release_wf, {}), keyless(gha, "other", {})], 2],
		# Hall: three matchers, the first two can only take identity A, so at most 2.
		["hall deficiency", [{"issuer": gha, "subject": "A"}, {"issuer": gha, "subjectRegExp": "A"}, {"issuer": gha, "subjectRegExp": "B|C"}], [keyless(gha, "A", {}), keyless(gha, "B", {}), keyless(gha, "C", {})], 2],
	]
	signer.count_distinct(matchers, [sig(s) | some s in signers]) == want
}

# any_match agrees with count_distinct >= 1 on the same cases.
test_any_match[desc] if {
	some [desc, matchers, signers, want] in [
		["none", [{"key": "a"}], [], false],
		["one key", [{"key": "a"}], [key("a")], true],
		["unlisted key", [{"key": "a"}], [key("c")], false],
		["second matcher", [{"key": "a"}, {"issuer": gha, "subjectRegExp": ".*"}], [keyless(gha, release_wf, {})], true],
		["wrong issuer", [{"issuer": "https://accounts.google.com", "subjectRegExp": ".*"}], [keyless(gha, release_wf, {})], false],
	]
	entries := [sig(s) | some s in signers]
	_any_match_bool(matchers, entries) == want
	_at_least_one(signer.count_distinct(matchers, entries)) == want
}

_at_least_one(n) if n >= 1

else := false

_any_match_bool(matchers, entries) if signer.any_match(matchers, entries)

else := false

test_count_distinct_many_matchers if {
	# Beyond max_exact matchers, the count is min(matchers, identities).
	matchers := [{"key": sprintf("k%d", [i])} | some i in numbers.range(1, 14)]
	signer.count_distinct(matchers, [sig(key(sprintf("k%d", [i]))) | some i in numbers.range(1, 14)]) == 14
	signer.count_distinct(matchers, [sig(key(sprintf("k%d", [i]))) | some i in numbers.range(1, 3)]) == 3
}

test_identity if {
	signer.identity(key("a")) == ["key", "a"]
	signer.identity(keyless(gha, "s", {"githubWorkflowSha": "1"})) == ["keyless", gha, "s"]
}

test_describe if {
	signer.describe(key("release")) == `key "release"`
	signer.describe(keyless(gha, "s", {})) == sprintf("keyless issuer %q subject \"s\"", [gha])
	signer.describe_matchers([
		{"key": "release"},
		{"issuer": gha, "subject": "s"},
		{"issuer": gha, "subjectRegExp": "s.*", "extensions": {"b": "2", "a": "1"}},
	]) == sprintf(`key "release"; issuer %q subject "s"; issuer %q subject matching "s.*" with a "1", b "2"`, [gha, gha])
}
