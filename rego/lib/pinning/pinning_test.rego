package imagegate.lib.pinning_test

import data.imagegate.lib.pinning

implicit_latest(image) := sprintf("pinning: image %q has neither a tag nor a digest, so it means the \"latest\" tag; pin a version tag and a digest", [image])

latest(image) := sprintf("pinning: image %q uses the \"latest\" tag; pin a version tag and a digest", [image])

no_digest(image) := sprintf("pinning: image %q is not pinned to a digest, and a tag can move between admission and pull; pin it as repo:tag@sha256:…", [image])

untagged(image) := sprintf("pinning: image %q is pinned to a digest but names no tag; write it as repo:tag@digest so the version is visible and freshness can be checked", [image])

test_defaults[desc] if {
	some [desc, image, want] in [
		["tag and digest", "ghcr.io/acme/app:1.4@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", set()],
		["short name", "nginx", {implicit_latest("nginx"), no_digest("nginx")}],
		["latest tag", "nginx:latest", {latest("nginx:latest"), no_digest("nginx:latest")}],
		["latest with digest", "nginx:latest@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {latest("nginx:latest@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1")}],
		["upper-case LATEST is another tag", "nginx:LATEST", {no_digest("nginx:LATEST")}],
		["version tag only", "ghcr.io/acme/app:1.4", {no_digest("ghcr.io/acme/app:1.4")}],
		["digest only", "ghcr.io/acme/app@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {untagged("ghcr.io/acme/app@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1")}],
		["registry port is not a tag", "registry.corp:5000/app@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {untagged("registry.corp:5000/app@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1")}],
		["registry port with implicit latest", "registry.corp:5000/app", {implicit_latest("registry.corp:5000/app"), no_digest("registry.corp:5000/app")}],
	]
	every params in [null, {}, {"enabled": true}, {"allowLatest": null}] {
		pinning.violations(image, null, params) == want
	}
}

test_params[desc] if {
	some [desc, image, params, want] in [
		["allowLatest", "nginx", {"allowLatest": true}, {no_digest("nginx")}],
		["allowLatest explicit tag", "nginx:latest@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {"allowLatest": true}, set()],
		["requireDigest off", "ghcr.io/acme/app:1.4", {"requireDigest": false}, set()],
		["requireDigest off still refuses latest", "nginx", {"requireDigest": false}, {implicit_latest("nginx")}],
		["allowUntagged", "ghcr.io/acme/app@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {"allowUntagged": true}, set()],
		["everything allowed", "nginx", {"allowLatest": true, "requireDigest": false}, set()],
		["tagPattern matches", "ghcr.io/acme/app:v1.2.3@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {"tagPattern": `v[0-9]+\.[0-9]+\.[0-9]+`}, set()],
		[
			"tagPattern is anchored at the end", "ghcr.io/acme/app:v1.2.3-debug@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {"tagPattern": `v[0-9]+\.[0-9]+\.[0-9]+`},
			{`pinning: image "ghcr.io/acme/app:v1.2.3-debug@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1" has tag "v1.2.3-debug", which does not match tagPattern "v[0-9]+\\.[0-9]+\\.[0-9]+"; use a tag of that form`},
		],
		[
			"tagPattern is anchored at the start", "ghcr.io/acme/app:xv1.2.3@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {"tagPattern": `v[0-9]+\.[0-9]+\.[0-9]+`},
			{`pinning: image "ghcr.io/acme/app:xv1.2.3@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1" has tag "xv1.2.3", which does not match tagPattern "v[0-9]+\\.[0-9]+\\.[0-9]+"; use a tag of that form`},
		],
		[
			"tagPattern alternatives stay anchored", "ghcr.io/acme/app:1-evil@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {"tagPattern": "1|2"},
			{`pinning: image "ghcr.io/acme/app:1-evil@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1" has tag "1-evil", which does not match tagPattern "1|2"; use a tag of that form`},
		],
		[
			"tagPattern applies to the implicit latest", "nginx", {"tagPattern": "v.*", "allowLatest": true, "requireDigest": false},
			{`pinning: image "nginx" has tag "latest", which does not match tagPattern "v.*"; use a tag of that form`},
		],
		["tagPattern does not apply without a tag", "ghcr.io/acme/app@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {"tagPattern": "v.*", "allowUntagged": true}, set()],
	]
	pinning.violations(image, null, params) == want
}

test_invalid_params[desc] if {
	some [desc, params, want] in [
		["string flag", {"allowLatest": "yes"}, {"allowLatest must be true or false"}],
		["two bad flags", {"requireDigest": 0, "allowUntagged": "no"}, {"requireDigest must be true or false", "allowUntagged must be true or false"}],
		["bad tagPattern", {"tagPattern": "v("}, {`tagPattern "v(" is not a valid regular expression`}],
		["tagPattern not a string", {"tagPattern": 1}, {"tagPattern 1 is not a valid regular expression"}],
	]
	pinning.violations("nginx:1", null, params) == {sprintf("pinning: image \"nginx:1\" cannot be checked: %s; fix the pinning parameters", [p]) | some p in want}
}

test_invalid_reference if {
	pinning.violations("nginx:", null, {}) == {`pinning: image "nginx:" is not a valid image reference: empty tag after ':'; fix the image name`}
}
