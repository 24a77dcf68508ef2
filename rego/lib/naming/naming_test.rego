package imagegate.lib.naming_test

import data.imagegate.lib.naming

acme := {"allowedRepositories": [`ghcr\.io/acme/.*`, `docker\.io/library/(nginx|redis)`]}

not_allowed(image, name) := sprintf("naming: image %q (%s) matches none of allowedRepositories %v; use an image from an allowed repository or add a pattern for it", [image, name, acme.allowedRepositories])

test_allowed[desc] if {
	some [desc, image, want] in [
		["allowed org", "ghcr.io/acme/app:1", set()],
		["allowed nested", "ghcr.io/acme/team/app@sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", set()],
		["docker hub short name normalised", "nginx:1.25", set()],
		["docker hub alias normalised", "index.docker.io/library/redis", set()],
		["upper-case registry normalised", "GHCR.IO/acme/app:1", set()],
		["other org", "ghcr.io/other/app:1", {not_allowed("ghcr.io/other/app:1", "ghcr.io/other/app")}],
		["attacker registry embedding the allowed name", "ghcr.io.evil.example/acme/app:1", {not_allowed("ghcr.io.evil.example/acme/app:1", "ghcr.io.evil.example/acme/app")}],
		["attacker registry with the allowed name as path", "evil.example/ghcr.io/acme/app:1", {not_allowed("evil.example/ghcr.io/acme/app:1", "evil.example/ghcr.io/acme/app")}],
		["allowed name as a docker hub path", "ghcr/acme/app:1", {not_allowed("ghcr/acme/app:1", "docker.io/ghcr/acme/app")}],
		["prefix of an allowed docker hub name", "nginx-evil:1", {not_allowed("nginx-evil:1", "docker.io/library/nginx-evil")}],
		["suffix after an allowed docker hub name", "nginx/evil:1", {not_allowed("nginx/evil:1", "docker.io/nginx/evil")}],
		["org name prefix", "ghcr.io/acme-evil/app:1", {not_allowed("ghcr.io/acme-evil/app:1", "ghcr.io/acme-evil/app")}],
	]
	naming.violations(image, null, acme) == want
}

test_denied[desc] if {
	params := {"deniedRepositories": [`docker\.io/library/.*`, `.*/debug-.*`]}
	some [desc, image, want] in [
		["official image", "ubuntu:24.04", {`naming: image "ubuntu:24.04" (docker.io/library/ubuntu) matches deniedRepositories pattern "docker\\.io/library/.*"; use another image`}],
		["debug image", "ghcr.io/acme/debug-shell:1", {`naming: image "ghcr.io/acme/debug-shell:1" (ghcr.io/acme/debug-shell) matches deniedRepositories pattern ".*/debug-.*"; use another image`}],
		["both", "debug-x", {
			`naming: image "debug-x" (docker.io/library/debug-x) matches deniedRepositories pattern "docker\\.io/library/.*"; use another image`,
			`naming: image "debug-x" (docker.io/library/debug-x) matches deniedRepositories pattern ".*/debug-.*"; use another image`,
		}],
		["other", "ghcr.io/acme/app:1", set()],
		["unanchored match does not count", "ghcr.io/acme/app-debug-x:1", set()],
	]
	naming.violations(image, null, params) == want
}

test_allowed_and_denied if {
	params := {"allowedRepositories": [`ghcr\.io/acme/.*`], "deniedRepositories": [`ghcr\.io/acme/legacy`]}
	naming.violations("ghcr.io/acme/app:1", null, params) == set()
	naming.violations("ghcr.io/acme/legacy:1", null, params) == {`naming: image "ghcr.io/acme/legacy:1" (ghcr.io/acme/legacy) matches deniedRepositories pattern "ghcr\\.io/acme/legacy"; use another image`}
}

test_anchoring_cannot_be_escaped if {
	# A pattern that only compiles once wrapped would escape the anchors; it is refused.
	params := {"allowedRepositories": [`ghcr\.io/acme/app)|(.*`]}
	naming.violations("evil.example/x:1", null, params) == {`naming: image "evil.example/x:1" cannot be checked: allowedRepositories[0] "ghcr\\.io/acme/app)|(.*" is not a valid regular expression; fix the naming parameters`}
}

test_no_params[desc] if {
	some [desc, params] in [["null", null], ["empty", {}], ["empty lists", {"allowedRepositories": [], "deniedRepositories": []}], ["null lists", {"allowedRepositories": null}]]
	naming.violations("anything.example/x:1", null, params) == set()
}

test_invalid_params[desc] if {
	some [desc, params, want] in [
		["not a list", {"allowedRepositories": `ghcr\.io/.*`}, {`naming: image "ghcr.io/x:1" cannot be checked: allowedRepositories must be a list of regular expressions; fix the naming parameters`}],
		["bad regex", {"deniedRepositories": ["("]}, {`naming: image "ghcr.io/x:1" cannot be checked: deniedRepositories[0] "(" is not a valid regular expression; fix the naming parameters`}],
		["not a string", {"allowedRepositories": [1]}, {`naming: image "ghcr.io/x:1" cannot be checked: allowedRepositories[0] 1 is not a valid regular expression; fix the naming parameters`}],
	]
	naming.violations("ghcr.io/x:1", null, params) == want
}

test_invalid_reference if {
	naming.violations("ghcr.io/Acme/app:1", null, acme) == {`naming: image "ghcr.io/Acme/app:1" is not a valid image reference: repository "Acme/app" does not match the distribution grammar (lower-case letters, digits and single separators '.', '_', '__' or '-' in path components separated by single slashes); fix the image name`}
}

test_facts_not_read if {
	naming.violations("ghcr.io/acme/app:1", {"digest": "sha256:whatever"}, acme) == naming.violations("ghcr.io/acme/app:1", null, acme)
}
