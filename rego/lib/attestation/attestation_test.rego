package imagegate.lib.attestation_test

import data.imagegate.lib.attestation

img := "ghcr.io/acme/app:1.4@sha256:aa"

slsa1 := "https://slsa.dev/provenance/v1"

slsa02 := "https://slsa.dev/provenance/v0.2"

vuln := "https://cosign.sigstore.dev/attestation/vuln/v1"

generator := "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v"

release_key := {"kind": "key", "key": "release"}

att(type, predicate) := {"format": "bundle", "digest": "sha256:aa", "predicateType": type, "signer": release_key, "predicate": predicate}

provenance_v1(builder) := att(slsa1, {
	"buildDefinition": {"buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"},
	"runDetails": {"builder": {"id": builder}, "metadata": {"invocationId": "1"}},
})

# As cosign v3.1.3 recorded it (shared testdata key-bundle-provenance-v0.2.json).
provenance_v02(builder) := att(slsa02, {
	"buildType": "https://github.com/slsa-framework/slsa-github-generator/container@v1",
	"builder": {"id": builder},
	"metadata": {"buildStartedOn": "2025-06-01T08:00:00Z", "buildFinishedOn": "2025-06-01T08:25:00Z"},
})

# trivy image --format cosign-vuln: scanner.result is Trivy's JSON report.
trivy(vulns) := att(vuln, {
	"invocation": {"uri": "", "event_id": "", "builder.id": ""},
	"scanner": {
		"uri": "pkg:github/aquasecurity/trivy@v0.58.0",
		"version": "0.58.0",
		"db": {"uri": "", "version": ""},
		"result": {
			"SchemaVersion": 2,
			"ArtifactName": "ghcr.io/acme/app:1.4",
			"Results": [
				{"Target": "ghcr.io/acme/app:1.4 (debian 12.8)", "Class": "os-pkgs", "Vulnerabilities": [{"VulnerabilityID": id, "PkgName": "libc6", "Severity": sev} | some [id, sev] in vulns]},
				{"Target": "app", "Class": "lang-pkgs"},
			],
		},
	},
	"metadata": {"scanStartedOn": "2025-06-01T00:00:00Z", "scanFinishedOn": "2025-06-01T00:01:00Z"},
})

# grype -o json as scanner.result.
grype(matches) := att(vuln, {
	"scanner": {
		"uri": "pkg:github/anchore/grype@v0.86.0",
		"version": "0.86.0",
		"result": {
			"matches": [{"vulnerability": {"id": id, "severity": sev}, "relatedVulnerabilities": [{"id": r} | some r in related]} | some [id, sev, related] in matches],
			"descriptor": {"name": "grype"},
		},
	},
})

manifest(atts) := {
	"digest": "sha256:aa",
	"platforms": [],
	"config": {"created": "2025-01-01T00:00:00Z"},
	"signatures": [],
	"attestations": atts,
	"verificationErrors": [],
}

req(type, conditions) := {"required": [{"predicateType": type, "signers": [{"key": "release"}], "conditions": conditions}]}

who := `attestation: image "ghcr.io/acme/app:1.4@sha256:aa" has a`

test_provenance[desc] if {
	some [desc, type, facts, want] in [
		["v1 from the generator", slsa1, manifest([provenance_v1(concat("", [generator, "2.1.0"]))]), set()],
		["v0.2 from the generator", slsa02, manifest([provenance_v02(concat("", [generator, "1.9.0"]))]), set()],
		[
			"v1 from another builder", slsa1, manifest([provenance_v1("https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main")]),
			{sprintf(`%s "https://slsa.dev/provenance/v1" attestation by key "release" from builder "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main", which does not start with builderIdPrefix %q; build it with the required builder`, [who, generator])},
		],
		[
			"v0.2 from the shared testdata builder", slsa02, manifest([provenance_v02("https://github.com/acme/demo/.github/workflows/release.yml@refs/heads/main")]),
			{sprintf(`%s "https://slsa.dev/provenance/v0.2" attestation by key "release" from builder "https://github.com/acme/demo/.github/workflows/release.yml@refs/heads/main", which does not start with builderIdPrefix %q; build it with the required builder`, [who, generator])},
		],
		[
			"builder id missing", slsa1, manifest([att(slsa1, {"runDetails": {}})]),
			{sprintf(`%s "https://slsa.dev/provenance/v1" attestation by key "release" without a builder id (predicate.runDetails.builder.id or predicate.builder.id); build it with a builder starting with %q`, [who, generator])},
		],
		[
			"v1 type with only a v0.2-style builder is still read", slsa1, manifest([att(slsa1, {"builder": {"id": concat("", [generator, "2"])}})]),
			set(),
		],
		[
			"every matching attestation must pass", slsa1, manifest([provenance_v1(concat("", [generator, "2.1.0"])), provenance_v1("https://evil.example/builder")]),
			{sprintf(`%s "https://slsa.dev/provenance/v1" attestation by key "release" from builder "https://evil.example/builder", which does not start with builderIdPrefix %q; build it with the required builder`, [who, generator])},
		],
	]
	attestation.violations(img, facts, req(type, {"builderIdPrefix": generator})) == want
}

test_no_conditions if {
	attestation.violations(img, manifest([provenance_v1("anything")]), req(slsa1, {})) == set()
	attestation.violations(img, manifest([provenance_v1("anything")]), {"required": [{"predicateType": slsa1, "signers": [{"key": "release"}]}]}) == set()
	attestation.violations(img, manifest([provenance_v1("anything")]), {"required": [{"predicateType": slsa1, "signers": [{"key": "release"}], "conditions": null}]}) == set()
}

missing(type, found, errors) := sprintf(`attestation: image "ghcr.io/acme/app:1.4@sha256:aa" has no verified %q attestation from the required signers (key "release"); verified attestations: %s; verification errors: %s; attest it (cosign attest --type …) with one of the required signers`, [type, found, errors])

test_missing[desc] if {
	some [desc, facts, want] in [
		["nothing", manifest([]), {missing(slsa1, "none", "none")}],
		["another type", manifest([trivy([])]), {missing(slsa1, `"https://cosign.sigstore.dev/attestation/vuln/v1" by key "release"`, "none")}],
		[
			"another signer", object.union(manifest([object.union(provenance_v1("b"), {"signer": {"kind": "key", "key": "dev"}})]), {"verificationErrors": ["bundle referrer sha256:bb: no trusted key verifies it"]}),
			{missing(slsa1, `"https://slsa.dev/provenance/v1" by key "dev"`, `"bundle referrer sha256:bb: no trusted key verifies it"`)},
		],
		["no lists at all", {"digest": "sha256:aa"}, {missing(slsa1, "none", "none")}],
	]
	attestation.violations(img, facts, req(slsa1, {})) == want
}

test_trivy[desc] if {
	some [desc, vulns, conditions, want] in [
		["clean", [], {"maxSeverity": "low", "deniedCVEs": ["CVE-2024-0001"]}, set()],
		["at the maximum", [["CVE-2024-0001", "HIGH"]], {"maxSeverity": "high"}, set()],
		["unknown severity passes a low maximum", [["CVE-2024-0009", "UNKNOWN"]], {"maxSeverity": "low"}, set()],
		[
			"above the maximum", [["CVE-2024-0001", "HIGH"], ["CVE-2024-0002", "CRITICAL"]], {"maxSeverity": "high"},
			{sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" reporting 1 vulnerabilities above maxSeverity "high": CVE-2024-0002 (critical); update the affected packages and rebuild`, [who])},
		],
		[
			"none allows nothing, not even unknown", [["CVE-2024-0009", "UNKNOWN"], ["CVE-2024-0010", "weird"]], {"maxSeverity": "none"},
			{sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" reporting 2 vulnerabilities above maxSeverity "none": CVE-2024-0009 (unknown), CVE-2024-0010 (unknown); update the affected packages and rebuild`, [who])},
		],
		[
			"denied, case-insensitive", [["CVE-2024-0001", "LOW"]], {"deniedCVEs": ["cve-2024-0001"]},
			{sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" reporting denied vulnerabilities CVE-2024-0001; update the affected packages and rebuild`, [who])},
		],
		[
			"both conditions", [["CVE-2024-0001", "LOW"], ["CVE-2024-0002", "CRITICAL"]], {"maxSeverity": "high", "deniedCVEs": ["CVE-2024-0001"]},
			{
				sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" reporting 1 vulnerabilities above maxSeverity "high": CVE-2024-0002 (critical); update the affected packages and rebuild`, [who]),
				sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" reporting denied vulnerabilities CVE-2024-0001; update the affected packages and rebuild`, [who]),
			},
		],
		[
			"long lists are cut", [[sprintf("CVE-2024-%04d", [i]), "CRITICAL"] | some i in numbers.range(1, 12)], {"maxSeverity": "high"},
			{sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" reporting 12 vulnerabilities above maxSeverity "high": %s and 2 more; update the affected packages and rebuild`, [who, concat(", ", [sprintf("CVE-2024-%04d (critical)", [i]) | some i in numbers.range(1, 10)])])},
		],
	]
	attestation.violations(img, manifest([trivy(vulns)]), req(vuln, conditions)) == want
}

test_trivy_without_results if {
	# Trivy omits Results when there was nothing to scan.
	a := att(vuln, {"scanner": {"result": {"SchemaVersion": 2, "ArtifactName": "x"}}})
	attestation.violations(img, manifest([a]), req(vuln, {"maxSeverity": "none"})) == set()
}

test_grype[desc] if {
	some [desc, matches, conditions, want] in [
		["clean", [], {"maxSeverity": "negligible"}, set()],
		[
			"above the maximum", [["GHSA-aaaa-bbbb-cccc", "Medium", []], ["CVE-2024-0005", "Negligible", []]], {"maxSeverity": "low"},
			{sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" reporting 1 vulnerabilities above maxSeverity "low": GHSA-aaaa-bbbb-cccc (medium); update the affected packages and rebuild`, [who])},
		],
		[
			"denied through a related id", [["GHSA-aaaa-bbbb-cccc", "Low", ["CVE-2024-0003"]]], {"deniedCVEs": ["CVE-2024-0003"]},
			{sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" reporting denied vulnerabilities GHSA-aaaa-bbbb-cccc; update the affected packages and rebuild`, [who])},
		],
		["related id not denied", [["GHSA-aaaa-bbbb-cccc", "Low", ["CVE-2024-0003"]]], {"deniedCVEs": ["CVE-2024-0004"]}, set()],
	]
	attestation.violations(img, manifest([grype(matches)]), req(vuln, conditions)) == want
}

test_unreadable_predicates[desc] if {
	some [desc, predicate, want] in [
		["unknown report", {"scanner": {"result": {"vulns": []}}}, sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" without scan results imagegate can read (predicate.scanner.result with Trivy Results[].Vulnerabilities[] or Grype matches[]); attest a Trivy or Grype JSON report`, [who])],
		["no scanner", {}, sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" without scan results imagegate can read (predicate.scanner.result with Trivy Results[].Vulnerabilities[] or Grype matches[]); attest a Trivy or Grype JSON report`, [who])],
		["null predicate", null, sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" without scan results imagegate can read (predicate.scanner.result with Trivy Results[].Vulnerabilities[] or Grype matches[]); attest a Trivy or Grype JSON report`, [who])],
		[
			"omitted for size", {"imagegateOmitted": {"reason": "predicate larger than limits.maxPredicateBytes", "bytes": 9000000, "limit": 4194304}},
			sprintf(`%s "https://cosign.sigstore.dev/attestation/vuln/v1" attestation by key "release" whose predicate was too large to read (predicate larger than limits.maxPredicateBytes), so its conditions cannot be checked; raise limits.maxPredicateBytes or attest less`, [who]),
		],
	]
	attestation.violations(img, manifest([att(vuln, predicate)]), req(vuln, {"maxSeverity": "critical"})) == {want}
}

test_several_requirements if {
	params := {"required": [
		{"predicateType": slsa1, "signers": [{"key": "release"}], "conditions": {"builderIdPrefix": generator}},
		{"predicateType": vuln, "signers": [{"key": "release"}], "conditions": {"maxSeverity": "high"}},
	]}
	attestation.violations(img, manifest([provenance_v1(concat("", [generator, "2"])), trivy([["CVE-1", "HIGH"]])]), params) == set()
	attestation.violations(img, manifest([trivy([["CVE-1", "HIGH"]])]), params) == {missing(slsa1, `"https://cosign.sigstore.dev/attestation/vuln/v1" by key "release"`, "none")}
}

index(index_atts, amd64_atts, arm64_atts) := {
	"digest": "sha256:aa",
	"platforms": [
		{"os": "linux", "architecture": "amd64", "digest": "sha256:01", "config": {}, "attestations": amd64_atts, "verificationErrors": []},
		{"os": "linux", "architecture": "arm64", "digest": "sha256:02", "config": {}, "attestations": arm64_atts, "verificationErrors": []},
		{"os": "unknown", "architecture": "unknown", "digest": "sha256:03"},
	],
	"signatures": [],
	"attestations": index_atts,
	"verificationErrors": [],
}

scoped(scope) := {"required": [{"predicateType": slsa1, "signers": [{"key": "release"}], "scope": scope}]}

platform_missing(platform, note) := sprintf(`attestation: image "ghcr.io/acme/app:1.4@sha256:aa" platform %s has no verified "https://slsa.dev/provenance/v1" attestation from the required signers (key "release")%s; verified attestations: none; verification errors: none; attest it (cosign attest --type …) with one of the required signers`, [platform, note])

index_missing(note) := sprintf(`attestation: image "ghcr.io/acme/app:1.4@sha256:aa" has no verified "https://slsa.dev/provenance/v1" attestation from the required signers (key "release")%s; verified attestations: none; verification errors: none; attest it (cosign attest --type …) with one of the required signers`, [note])

any_note := ` (scope "any": on the index or on every platform)`

test_scope[desc] if {
	p := provenance_v1("b")
	some [desc, scope, facts, want] in [
		["index", "index", index([p], [], []), set()],
		["index is the default", null, index([], [p], [p]), {index_missing("")}],
		["platforms", "platforms", index([], [p], [p]), set()],
		["platforms: one missing", "platforms", index([p], [p], []), {platform_missing("linux/arm64 (sha256:02)", "")}],
		["platforms: single manifest", "platforms", manifest([p]), set()],
		["any: index", "any", index([p], [], []), set()],
		["any: platforms", "any", index([], [p], [p]), set()],
		["any: neither", "any", index([], [], [p]), {index_missing(any_note), platform_missing("linux/amd64 (sha256:01)", any_note)}],
		["any: single manifest without", "any", manifest([]), {index_missing(any_note)}],
	]
	attestation.violations(img, facts, scoped(scope)) == want
}

test_no_facts if {
	attestation.violations(img, null, req(slsa1, {})) == {`attestation: image "ghcr.io/acme/app:1.4@sha256:aa" has no facts, so its attestations cannot be checked`}
}

test_invalid_params[desc] if {
	some [desc, params, problems] in [
		["no params", null, {"required must be a non-empty list of required attestations"}],
		["empty", {"required": []}, {"required must be a non-empty list of required attestations"}],
		["not an object", {"required": [slsa1]}, {"required[0] must be an object with predicateType and signers"}],
		["no signers", {"required": [{"predicateType": slsa1}]}, {"required[0].signers must be a non-empty list of signers"}],
		["no type", {"required": [{"signers": [{"key": "a"}]}]}, {"required[0].predicateType must be a non-empty string"}],
		["unknown field", {"required": [{"predicateType": slsa1, "signers": [{"key": "a"}], "builderIdPrefix": "x"}]}, {`required[0] has unknown fields ["builderIdPrefix"] (known: predicateType, signers, scope, conditions)`}],
		["bad scope", {"required": [{"predicateType": slsa1, "signers": [{"key": "a"}], "scope": "every"}]}, {`required[0].scope must be "index", "platforms" or "any", not "every"`}],
		["scope not a string", {"required": [{"predicateType": slsa1, "signers": [{"key": "a"}], "scope": ["index"]}]}, {`required[0].scope must be "index", "platforms" or "any", not ["index"]`}],
		["conditions not an object", {"required": [{"predicateType": slsa1, "signers": [{"key": "a"}], "conditions": ["x"]}]}, {"required[0].conditions must be an object"}],
		["unknown condition", {"required": [{"predicateType": slsa1, "signers": [{"key": "a"}], "conditions": {"builderId": "x"}}]}, {`required[0].conditions has unknown fields ["builderId"] (known: builderIdPrefix, maxSeverity, deniedCVEs)`}],
		[
			"bad conditions", {"required": [{"predicateType": slsa1, "signers": [{"key": "a"}], "conditions": {"builderIdPrefix": "", "maxSeverity": "severe", "deniedCVEs": "CVE-1"}}]},
			{
				"required[0].conditions.builderIdPrefix must be a non-empty string",
				`required[0].conditions.maxSeverity must be one of none, unknown, negligible, low, medium, high, critical, not "severe"`,
				"required[0].conditions.deniedCVEs must be a list of vulnerability ids",
			},
		],
		["keyless signer without subject", {"required": [{"predicateType": slsa1, "signers": [{"issuer": "https://accounts.google.com"}]}]}, {`required[0].signers[0] needs subject or subjectRegExp: without one, anyone with a certificate from issuer "https://accounts.google.com" would match`}],
	]
	attestation.violations(img, manifest([]), params) == {sprintf("attestation: image %q cannot be checked: %s; fix the attestation parameters", [img, p]) | some p in problems}
}
