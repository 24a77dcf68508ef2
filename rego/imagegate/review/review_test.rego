package imagegate.review_test

import data.imagegate.review

digest := "sha256:abababababababababababababababababababababababababababababababab"

pinned := sprintf("ghcr.io/acme/app:1.0@%s", [digest])

req(ns, images, annotations) := {
	"apiVersion": "imagepolicy.k8s.io/v1alpha1",
	"kind": "ImageReview",
	"spec": {
		"namespace": ns,
		"containers": [{"image": i} | some i in images],
		"annotations": annotations,
	},
}

signed_facts := {
	"image": pinned,
	"digest": digest,
	"tagDigest": digest,
	"platforms": [],
	"config": {"created": "2026-11-01T00:00:00Z"},
	"signatures": [{"format": "bundle", "digest": digest, "signer": {"kind": "key", "key": "release"}}],
	"attestations": [],
	"verificationErrors": [],
}

unsigned_facts := object.union(signed_facts, {"signatures": [], "verificationErrors": ["signed by a key not in config (tried release)"]})

facts_ok(images) := {i: {"ok": true, "facts": signed_facts} | some i in images}

facts_unsigned(images) := {i: {"ok": true, "facts": unsigned_facts} | some i in images}

facts_down(images) := {i: {"ok": false, "error": "unavailable: registry answered HTTP 429", "transient": true} | some i in images}

signature_params := {"rules": {"signature": {"signers": [{"key": "release"}]}}}

test_default_denies_latest if {
	d := review.decision with input as req("prod", ["ghcr.io/acme/app:latest"], {})
		with data.imagegate.registries as ["ghcr.io"]
	d.allowed == false
	contains(d.reason, `pinning: image "ghcr.io/acme/app:latest" uses the "latest" tag`)
	contains(d.auditAnnotations.violations, "pinning:")
}

test_default_allows_digest_from_allowed_registry if {
	some image in [pinned, sprintf("ghcr.io/acme/app@%s", [digest])]
	d := review.decision with input as req("prod", [image], {})
		with data.imagegate.registries as ["ghcr.io"]
	d == {"allowed": true, "reason": "all images pass image policy", "auditAnnotations": {}}
}

test_default_denies_other_registry if {
	d := review.decision with input as req("prod", [pinned], {})
		with data.imagegate.registries as ["registry.corp:5000"]
	d.allowed == false
	contains(d.reason, "registry: image")
}

test_no_facts_without_fact_rules if {
	not review.needs_facts with input as req("prod", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
}

test_signature_rule_uses_facts if {
	d := review.decision with input as req("prod", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as signature_params
		with imagegate.facts as facts_ok
	d.allowed == true
}

test_unsigned_denied_with_reason if {
	d := review.decision with input as req("prod", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as signature_params
		with imagegate.facts as facts_unsigned
	d.allowed == false
	contains(d.reason, sprintf("signature: image %q", [pinned]))
}

test_facts_unavailable_fails_closed if {
	d := review.decision with input as req("prod", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as signature_params
		with imagegate.facts as facts_down
	d.allowed == false
	d.unavailable == true
	startswith(d.reason, "imagegate could not check the images right now: ")
	contains(d.reason, sprintf("facts: could not check image %q: unavailable", [pinned]))
}

facts_not_found(images) := {i: {"ok": false, "error": "not_found: manifest unknown"} | some i in images}

# A definitive failure (the image does not exist) is a verdict, not "could not
# look": a plain denial.
test_facts_not_found_is_a_denial if {
	d := review.decision with input as req("prod", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as signature_params
		with imagegate.facts as facts_not_found
	d.allowed == false
	not d.unavailable
	startswith(d.reason, "imagegate denied: ")
	contains(d.reason, sprintf("facts: could not check image %q: not_found", [pinned]))
}

# Another violation besides the unreadable facts: the denial stands whatever
# the facts would say, so it is a plain denial.
test_facts_down_with_other_violation_is_a_denial if {
	latest := "ghcr.io/acme/app:latest"
	d := review.decision with input as req("prod", [pinned, latest], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as signature_params
		with imagegate.facts as facts_down
	d.allowed == false
	not d.unavailable
	startswith(d.reason, "imagegate denied: ")
	contains(d.reason, sprintf("pinning: image %q", [latest]))
}

facts_mixed(images) := object.union(facts_down([images[0]]), facts_not_found([images[1]]))

# One image unreadable for a transient reason, another for a definitive one:
# a plain denial.
test_facts_mixed_failures_is_a_denial if {
	other := sprintf("ghcr.io/acme/other:1.0@%s", [digest])
	d := review.decision with input as req("prod", [pinned, other], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as signature_params
		with imagegate.facts as facts_mixed
	d.allowed == false
	not d.unavailable
}

# Audit namespaces still admit (and record) when facts are unavailable.
test_facts_unavailable_audit_admits if {
	d := review.decision with input as req("dev-alice", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as object.union(signature_params, {"audit": ["dev-*"]})
		with imagegate.facts as facts_down
	d.allowed == true
	d.auditAnnotations.mode == "audit"
	not d.unavailable
}

test_exempt_namespace if {
	d := review.decision with input as req("kube-system", ["nginx:latest"], {})
		with data.imagegate.params as {"exempt": ["kube-*"]}
	d == {"allowed": true, "reason": "namespace \"kube-system\" is exempt from image policy", "auditAnnotations": {"mode": "exempt"}}
}

test_audit_namespace if {
	d := review.decision with input as req("dev-alice", ["nginx:latest"], {})
		with data.imagegate.params as {"audit": ["dev-*"], "exempt": ["kube-system"]}
	d.allowed == true
	d.auditAnnotations.mode == "audit"
	startswith(d.reason, "audit mode, would deny: pinning:")
}

test_break_glass_permitted if {
	d := review.decision with input as req("prod-emergency", ["nginx:latest"], {"alpha.image-policy.k8s.io/break-glass": "true"})
		with data.imagegate.params as {"breakGlass": {"namespaces": ["prod-emergency"]}}
	d.allowed == true
	d.auditAnnotations["break-glass"] == "true"
	contains(d.auditAnnotations.violations, "pinning:")
}

test_break_glass_not_permitted if {
	d := review.decision with input as req("prod", ["nginx:latest"], {"alpha.image-policy.k8s.io/break-glass": "true"})
		with data.imagegate.params as {"breakGlass": {"namespaces": ["prod-emergency"]}}
	d.allowed == false
	contains(d.reason, `(break-glass annotation "alpha.image-policy.k8s.io/break-glass" is not permitted in namespace "prod")`)
}

test_break_glass_custom_annotation_not_needed if {
	d := review.decision with input as req("prod", [pinned], {"example.image-policy.k8s.io/override": "true"})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as {"breakGlass": {"annotation": "example.image-policy.k8s.io/override", "namespaces": ["*"]}}
	d.allowed == true
	d.auditAnnotations["break-glass"] == "requested but not needed"
}

test_namespace_rules_override_defaults if {
	params := {"namespaces": [{"names": ["prod-*"], "rules": {"registry": {"allowedRegistries": ["registry.corp:5000"]}}}]}
	prod := review.decision with input as req("prod-eu", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as params
	prod.allowed == false
	dev := review.decision with input as req("dev", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as params
	dev.allowed == true
}

# Several entries may match a namespace: the first one's rules apply (two
# matching entries used to be a conflict error, failing the review).
test_namespace_rules_first_match_wins if {
	params := {"namespaces": [
		{"names": ["prod-*"], "rules": {"registry": {"allowedRegistries": ["registry.corp:5000"]}}},
		{"names": ["prod-eu"], "rules": {"registry": {"enabled": false}}},
	]}
	first := review.decision with input as req("prod-eu", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as params
	first.allowed == false
	contains(first.reason, "registry: image")
	second := review.decision with input as req("prod-eu", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as {"namespaces": array.reverse(params.namespaces)}
	second.allowed == true
}

test_rule_disabled if {
	d := review.decision with input as req("prod", ["ghcr.io/acme/app:1.0"], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as {"rules": {"pinning": {"enabled": false}}}
	d.allowed == true
}

test_every_rule_dispatches if {
	params := {"rules": {
		"naming": {"deniedRepositories": ["ghcr.io/acme/.*"]},
		"age": {"maxAgeDays": 1},
		"freshness": {},
		"attestation": {"required": [{"predicateType": "https://slsa.dev/provenance/v1", "signers": [{"key": "release"}]}]},
	}}
	d := review.decision with input as req("prod", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as params
		with imagegate.facts as facts_ok
		with time.now_ns as time.parse_rfc3339_ns("2026-11-22T00:00:00Z")
	d.allowed == false
	every rule in ["naming:", "age:", "attestation:"] {
		contains(d.reason, rule)
	}
}

test_repository_prefixes_alone_restrict if {
	params := {"rules": {"registry": {"allowedRepositoryPrefixes": ["ghcr.io/acme/"]}}}
	ok := review.decision with input as req("prod", [pinned], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as params
	ok.allowed == true
	other := review.decision with input as req("prod", [sprintf("ghcr.io/evil/app:1@%s", [digest])], {})
		with data.imagegate.registries as ["ghcr.io"]
		with data.imagegate.params as params
	other.allowed == false
	contains(other.reason, "registry:")
}
