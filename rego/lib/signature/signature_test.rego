package imagegate.lib.signature_test

import data.imagegate.lib.signature

gha := "https://token.actions.githubusercontent.com"

release_wf := "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.4.0"

img := "ghcr.io/acme/app:1.4@sha256:aa"

key_sig(name) := {"format": "bundle", "digest": "sha256:aa", "signer": {"kind": "key", "key": name}}

keyless_sig(subject) := {"format": "legacy", "digest": "sha256:aa", "signer": {
	"kind": "keyless",
	"issuer": gha,
	"subject": subject,
	"extensions": {"githubWorkflowRepository": "acme/app", "githubWorkflowSha": "0123"},
}}

manifest(sigs, errors) := {
	"digest": "sha256:aa",
	"mediaType": "application/vnd.oci.image.manifest.v1+json",
	"platforms": [],
	"config": {"created": "2025-01-01T00:00:00Z", "os": "linux", "architecture": "amd64"},
	"signatures": sigs,
	"attestations": [],
	"verificationErrors": errors,
}

platform(arch, digest, sigs) := {
	"os": "linux",
	"architecture": arch,
	"digest": digest,
	"config": {"created": "2025-01-01T00:00:00Z"},
	"signatures": sigs,
	"attestations": [],
	"verificationErrors": [],
}

index(sigs, amd64_sigs, arm64_sigs) := {
	"digest": "sha256:aa",
	"mediaType": "application/vnd.oci.image.index.v1+json",
	"platforms": [
		platform("amd64", "sha256:01", amd64_sigs),
		platform("arm64", "sha256:02", arm64_sigs),
		# not an image: imagegate does not look for its signatures
		{"os": "unknown", "architecture": "unknown", "digest": "sha256:03", "signatures": [], "attestations": [], "verificationErrors": []},
	],
	"signatures": sigs,
	"attestations": [],
	"verificationErrors": [],
}

release := {"signers": [{"key": "release"}]}

ci := {"issuer": gha, "subjectRegExp": `https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*`, "extensions": {"githubWorkflowRepository": "acme/app"}}

not_signed(who, wanted, found, errors) := sprintf("signature: %s is not signed by any of the required signers (%s); verified signatures: %s; verification errors: %s; sign it with one of the required signers", [who, wanted, found, errors])

test_single_manifest[desc] if {
	some [desc, facts, params, want] in [
		["signed with the key", manifest([key_sig("release")], []), release, set()],
		["signed keyless by the workflow", manifest([keyless_sig(release_wf)], []), {"signers": [ci]}, set()],
		["either signer", manifest([keyless_sig(release_wf)], []), {"signers": [{"key": "release"}, ci]}, set()],
		[
			"signed by a key not in config", manifest([key_sig("dev")], ["legacy .sig layer 0: no trusted key verifies it"]), release,
			{not_signed(`image "ghcr.io/acme/app:1.4@sha256:aa"`, `key "release"`, `key "dev"`, `"legacy .sig layer 0: no trusted key verifies it"`)},
		],
		[
			"unsigned", manifest([], []), release,
			{not_signed(`image "ghcr.io/acme/app:1.4@sha256:aa"`, `key "release"`, "none", "none")},
		],
		[
			"unsigned with two errors", manifest([], ["a: x", "b: y"]), release,
			{not_signed(`image "ghcr.io/acme/app:1.4@sha256:aa"`, `key "release"`, "none", `"a: x"; "b: y"`)},
		],
		[
			"another repository's workflow", manifest([keyless_sig("https://github.com/acme/app-evil/.github/workflows/release.yml@refs/tags/v1")], []), {"signers": [ci]},
			{not_signed(`image "ghcr.io/acme/app:1.4@sha256:aa"`, `issuer "https://token.actions.githubusercontent.com" subject matching "https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/v.*" with githubWorkflowRepository "acme/app"`, `keyless issuer "https://token.actions.githubusercontent.com" subject "https://github.com/acme/app-evil/.github/workflows/release.yml@refs/tags/v1"`, "none")},
		],
		[
			"a branch, not a tag", manifest([keyless_sig("https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main")], []), {"signers": [ci]},
			{not_signed(`image "ghcr.io/acme/app:1.4@sha256:aa"`, `issuer "https://token.actions.githubusercontent.com" subject matching "https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/v.*" with githubWorkflowRepository "acme/app"`, `keyless issuer "https://token.actions.githubusercontent.com" subject "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"`, "none")},
		],
	]
	signature.violations(img, facts, params) == want
}

test_count[desc] if {
	params := {"signers": [{"key": "release"}, ci], "count": 2}
	some [desc, sigs, want] in [
		["both", [key_sig("release"), keyless_sig(release_wf)], set()],
		["one of two", [key_sig("release"), key_sig("release")], {`signature: image "ghcr.io/acme/app:1.4@sha256:aa" is signed by 1 distinct required signers, needs 2 (key "release"; issuer "https://token.actions.githubusercontent.com" subject matching "https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/v.*" with githubWorkflowRepository "acme/app"); verified signatures: key "release"; verification errors: none; sign it with 2 of the required signers`}],
	]
	signature.violations(img, manifest(sigs, []), params) == want
}

test_count_one_identity_two_matchers if {
	# Two list entries that the same workflow satisfies are still one signer.
	params := {"signers": [ci, {"issuer": gha, "subject": release_wf}], "count": 2}
	count(signature.violations(img, manifest([keyless_sig(release_wf)], []), params)) == 1
}

index_unsigned := `image "ghcr.io/acme/app:1.4@sha256:aa"`

arm64_unsigned := `image "ghcr.io/acme/app:1.4@sha256:aa" platform linux/arm64 (sha256:02)`

test_scope[desc] if {
	r := key_sig("release")
	some [desc, scope, facts, want] in [
		["index: index signed", "index", index([r], [], []), set()],
		["index: only platforms signed", "index", index([], [r], [r]), {not_signed(index_unsigned, `key "release"`, "none", "none")}],
		["index is the default", null, index([], [r], [r]), {not_signed(index_unsigned, `key "release"`, "none", "none")}],
		["platforms: all signed", "platforms", index([], [r], [r]), set()],
		["platforms: index signature is not enough", "platforms", index([r], [r], []), {not_signed(arm64_unsigned, `key "release"`, "none", "none")}],
		["platforms: single manifest is its own platform", "platforms", manifest([r], []), set()],
		["platforms: unsigned single manifest", "platforms", manifest([], []), {not_signed(index_unsigned, `key "release"`, "none", "none")}],
		["any: index signed", "any", index([r], [], []), set()],
		["any: every platform signed", "any", index([], [r], [r]), set()],
		[
			"any: neither", "any", index([], [r], []),
			{
				sprintf("signature: %s is not signed by any of the required signers (key \"release\") (scope \"any\": the index or every platform must be signed); verified signatures: none; verification errors: none; sign it with one of the required signers", [index_unsigned]),
				sprintf("signature: %s is not signed by any of the required signers (key \"release\") (scope \"any\": the index or every platform must be signed); verified signatures: none; verification errors: none; sign it with one of the required signers", [arm64_unsigned]),
			},
		],
		[
			"any: unsigned single manifest", "any", manifest([], []),
			{sprintf("signature: %s is not signed by any of the required signers (key \"release\") (scope \"any\": the index or every platform must be signed); verified signatures: none; verification errors: none; sign it with one of the required signers", [index_unsigned])},
		],
	]
	signature.violations(img, facts, object.union(release, {"scope": scope})) == want
}

test_missing_lists if {
	# Facts from an older or partial producer: absent lists are empty.
	signature.violations(img, {"digest": "sha256:aa"}, release) == {not_signed(index_unsigned, `key "release"`, "none", "none")}
}

test_no_facts if {
	signature.violations(img, null, release) == {`signature: image "ghcr.io/acme/app:1.4@sha256:aa" has no facts, so its signatures cannot be checked`}
}

test_invalid_params[desc] if {
	some [desc, params, problems] in [
		["no params", null, {"signers must be a non-empty list of signers"}],
		["no signers", {}, {"signers must be a non-empty list of signers"}],
		["bad signer", {"signers": [{"issuer": gha}]}, {sprintf("signers[0] needs subject or subjectRegExp: without one, anyone with a certificate from issuer %q would match", [gha])}],
		["count zero", {"signers": [{"key": "a"}], "count": 0}, {"count must be a whole number, 1 or more, not 0"}],
		["count fraction", {"signers": [{"key": "a"}, {"key": "b"}], "count": 1.5}, {"count must be a whole number, 1 or more, not 1.5"}],
		["count string", {"signers": [{"key": "a"}], "count": "1"}, {`count must be a whole number, 1 or more, not "1"`}],
		["count above list", {"signers": [{"key": "a"}], "count": 2}, {"count 2 is more than the 1 signers listed, so no image could pass"}],
		["bad scope", {"signers": [{"key": "a"}], "scope": "all"}, {`scope must be "index", "platforms" or "any", not "all"`}],
	]
	signature.violations(img, manifest([], []), params) == {sprintf("signature: image %q cannot be checked: %s; fix the signature parameters", [img, p]) | some p in problems}
}
