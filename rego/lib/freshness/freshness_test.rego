package imagegate.lib.freshness_test

import data.imagegate.lib.freshness

d1 := "sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"

d2 := "sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"

pinned := "ghcr.io/acme/app:1.4@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"

stale := sprintf("freshness: image %q pins %s, but tag \"1.4\" now points to %s; update the digest to the tag's current one (or use the digest mutation)", [pinned, d1, d2])

test_tag_and_digest[desc] if {
	some [desc, facts, want] in [
		["tag still there", {"digest": d1, "tagDigest": d1}, set()],
		["tag moved", {"digest": d1, "tagDigest": d2}, {stale}],
		["tag not resolved", {"digest": d1, "tagDigest": ""}, set()],
		["no tagDigest field", {"digest": d1}, set()],
		["digest missing from facts: the pinned one", {"tagDigest": d2}, {stale}],
		["no facts", null, {sprintf("freshness: image %q has no facts, so whether tag \"1.4\" still points to %s cannot be checked", [pinned, d1])}],
	]
	every params in [null, {}, {"enabled": true}] {
		freshness.violations(pinned, facts, params) == want
	}
}

test_not_applicable[desc] if {
	some [desc, image] in [
		["tag only", "ghcr.io/acme/app:1.4"],
		["digest only", "ghcr.io/acme/app@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"],
		["implicit latest", "ghcr.io/acme/app"],
		["invalid reference", "ghcr.io/acme/app:@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"],
	]
	freshness.violations(image, {"digest": d1, "tagDigest": d2}, {}) == set()
}

test_disabled if {
	freshness.violations(pinned, {"digest": d1, "tagDigest": d2}, {"enabled": false}) == set()
	freshness.violations(pinned, null, {"enabled": false}) == set()
}

test_invalid_params_not_string if {
	freshness.violations(pinned, {"digest": d1, "tagDigest": d1}, {"enabled": 0}) == {sprintf("freshness: image %q cannot be checked: enabled must be true or false, not 0; fix the freshness parameters", [pinned])}
}

test_invalid_params if {
	freshness.violations(pinned, {"digest": d1, "tagDigest": d1}, {"enabled": "no"}) == {sprintf("freshness: image %q cannot be checked: enabled must be true or false, not \"no\"; fix the freshness parameters", [pinned])}
}
