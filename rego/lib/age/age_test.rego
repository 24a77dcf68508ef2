package imagegate.lib.age_test

import data.imagegate.lib.age

# 2025-06-01T00:00:00Z
now := 1748736000000000000

single(created) := {"digest": "sha256:11", "platforms": [], "config": {"created": created, "os": "linux", "architecture": "amd64"}}

image := "ghcr.io/acme/app:1"

test_single_platform[desc] if {
	some [desc, created, want] in [
		["fresh", "2025-05-01T00:00:00Z", set()],
		["exactly max age", "2025-03-03T00:00:00Z", set()],
		["offset time zone", "2025-05-01T02:00:00+02:00", set()],
		["fractional seconds", "2025-05-01T00:00:00.123456789Z", set()],
		["slightly in the future (clock skew)", "2025-06-01T12:00:00Z", set()],
		["one second too old", "2025-03-02T23:59:59Z", {`age: image "ghcr.io/acme/app:1" was created 2025-03-02T23:59:59Z, 90 days ago, more than maxAgeDays 90; rebuild it on current base images`}],
		["old", "2023-01-01T00:00:00Z", {`age: image "ghcr.io/acme/app:1" was created 2023-01-01T00:00:00Z, 882 days ago, more than maxAgeDays 90; rebuild it on current base images`}],
		["far future", "2030-01-01T00:00:00Z", {`age: image "ghcr.io/acme/app:1" has creation time 2030-01-01T00:00:00Z, in the future; a wrong build clock makes its age meaningless, rebuild it`}],
		["empty", "", {`age: image "ghcr.io/acme/app:1" has no creation time (config.created is empty), so its age cannot be checked; rebuild it with a tool that records one`}],
		["go zero time", "0001-01-01T00:00:00Z", {`age: image "ghcr.io/acme/app:1" has no creation time (config.created is empty), so its age cannot be checked; rebuild it with a tool that records one`}],
		["not a string", 1234, {`age: image "ghcr.io/acme/app:1" has no creation time (config.created is empty), so its age cannot be checked; rebuild it with a tool that records one`}],
		["not rfc 3339", "2025-05-01 00:00:00", {`age: image "ghcr.io/acme/app:1" has creation time "2025-05-01 00:00:00", which is not an RFC 3339 time between 1678 and 2262; rebuild it with a tool that records one`}],
		["epoch", "1970-01-01T00:00:00Z", {reproducible("image \"ghcr.io/acme/app:1\"", "1970-01-01T00:00:00Z")}],
		["epoch in another zone", "1970-01-01T01:00:00+01:00", {reproducible("image \"ghcr.io/acme/app:1\"", "1970-01-01T01:00:00+01:00")}],
		["buildpacks 1980", "1980-01-01T00:00:01Z", {reproducible("image \"ghcr.io/acme/app:1\"", "1980-01-01T00:00:01Z")}],
		["1980-01-02 is just old", "1980-01-02T00:00:00Z", {`age: image "ghcr.io/acme/app:1" was created 1980-01-02T00:00:00Z, 16587 days ago, more than maxAgeDays 90; rebuild it on current base images`}],
	]
	age.violations(image, single(created), {"maxAgeDays": 90}) == want with time.now_ns as now
}

reproducible(who, created) := sprintf("age: %s has creation time %s, the fixed timestamp of a reproducible build (SOURCE_DATE_EPOCH), so its real age is unknown; set reproducibleBuilds to \"allow\" to accept such images, or rebuild it with a real creation time", [who, created])

test_missing_created_field if {
	age.violations(image, {"config": {"os": "linux"}}, {"maxAgeDays": 1}) == {`age: image "ghcr.io/acme/app:1" has no creation time (config.created is empty), so its age cannot be checked; rebuild it with a tool that records one`} with time.now_ns as now
}

test_reproducible_builds[desc] if {
	some [desc, mode, want] in [
		["deny is the default", null, {reproducible("image \"ghcr.io/acme/app:1\"", "1970-01-01T00:00:00Z")}],
		["deny", "deny", {reproducible("image \"ghcr.io/acme/app:1\"", "1970-01-01T00:00:00Z")}],
		["allow", "allow", set()],
	]
	age.violations(image, single("1970-01-01T00:00:00Z"), {"maxAgeDays": 30, "reproducibleBuilds": mode}) == want with time.now_ns as now
}

index := {
	"digest": "sha256:aa",
	"mediaType": "application/vnd.oci.image.index.v1+json",
	"platforms": [
		{"os": "linux", "architecture": "amd64", "digest": "sha256:01", "config": {"created": "2025-05-30T00:00:00Z"}},
		{"os": "linux", "architecture": "arm64", "variant": "v8", "digest": "sha256:02", "config": {"created": "2024-01-01T00:00:00Z"}},
		{"os": "linux", "architecture": "s390x", "digest": "sha256:03", "config": {"created": ""}},
		{"os": "linux", "architecture": "ppc64le", "digest": "sha256:04", "config": {"created": "1980-01-01T00:00:01Z"}},
		{"os": "unknown", "architecture": "unknown", "digest": "sha256:05"},
	],
}

test_every_platform if {
	age.violations("ghcr.io/acme/app:1", index, {"maxAgeDays": 90}) == {
		`age: image "ghcr.io/acme/app:1" platform linux/arm64/v8 was created 2024-01-01T00:00:00Z, 517 days ago, more than maxAgeDays 90; rebuild it on current base images`,
		`age: image "ghcr.io/acme/app:1" platform linux/s390x has no creation time (config.created is empty), so its age cannot be checked; rebuild it with a tool that records one`,
		reproducible("image \"ghcr.io/acme/app:1\" platform linux/ppc64le", "1980-01-01T00:00:01Z"),
	} with time.now_ns as now
}

test_no_config[desc] if {
	some [desc, facts] in [
		["index without image platforms", {"platforms": [{"os": "unknown", "architecture": "unknown", "digest": "sha256:05"}]}],
		["manifest without config", {"platforms": [], "config": null}],
		["nothing", {}],
	]
	age.violations(image, facts, {"maxAgeDays": 90}) == {`age: image "ghcr.io/acme/app:1" has no image config to read its creation time from; use an image built for a platform`} with time.now_ns as now
}

test_no_facts if {
	age.violations(image, null, {"maxAgeDays": 90}) == {`age: image "ghcr.io/acme/app:1" has no facts, so its age cannot be checked`}
}

test_invalid_params[desc] if {
	some [desc, params, problem] in [
		["missing", {}, "maxAgeDays is required (a number of days)"],
		["null params", null, "maxAgeDays is required (a number of days)"],
		["string", {"maxAgeDays": "90"}, "maxAgeDays must be a number of days, 0 or more"],
		["negative", {"maxAgeDays": -1}, "maxAgeDays must be a number of days, 0 or more"],
		["bad mode", {"maxAgeDays": 1, "reproducibleBuilds": "maybe"}, `reproducibleBuilds must be "allow" or "deny", not "maybe"`],
		["mode not a string", {"maxAgeDays": 1, "reproducibleBuilds": true}, `reproducibleBuilds must be "allow" or "deny", not true`],
	]
	age.violations(image, single("2025-05-01T00:00:00Z"), params) == {sprintf(`age: image "ghcr.io/acme/app:1" cannot be checked: %s; fix the age parameters`, [problem])} with time.now_ns as now
}
