package imagegate.lib.registry_test

import data.imagegate.lib.registry

params := {
	"allowedRegistries": ["ghcr.io", "Registry.Corp:5000", "index.docker.io"],
	"allowedRepositoryPrefixes": ["quay.io/acme/", "GCR.io/distroless", "registry.corp/team/app"],
}

refused(image, name, registry) := sprintf("registry: image %q is from %q, which is not allowed (allowedRegistries %v, allowedRepositoryPrefixes %v); use an image from an allowed registry, or allow %q", [image, name, params.allowedRegistries, params.allowedRepositoryPrefixes, registry])

test_allowed[desc] if {
	some [desc, image] in [
		["exact registry", "ghcr.io/anyone/app:1"],
		["upper-case image registry", "GHCR.IO/anyone/app:1"],
		["registry with port, param upper-case", "registry.corp:5000/x:1"],
		["docker hub short name via alias param", "nginx:1"],
		["docker hub alias image", "registry-1.docker.io/library/nginx:1"],
		["prefix with trailing slash", "quay.io/acme/app:1"],
		["prefix without trailing slash, upper-case registry", "gcr.io/distroless/static:nonroot"],
		["prefix equal to the repository", "registry.corp/team/app:1"],
		["nested under prefix", "registry.corp/team/app/sub:1"],
	]
	registry.violations(image, null, params) == set()
}

test_refused[desc] if {
	some [desc, image, name, host] in [
		["other registry", "quay.io/other/app:1", "quay.io/other/app", "quay.io"],
		["attacker domain ending like an allowed one", "evilghcr.io/x:1", "evilghcr.io/x", "evilghcr.io"],
		["attacker domain starting like an allowed one", "ghcr.io.evil.example/x:1", "ghcr.io.evil.example/x", "ghcr.io.evil.example"],
		["allowed registry as a path", "evil.example/ghcr.io/x:1", "evil.example/ghcr.io/x", "evil.example"],
		["registry without the allowed port", "registry.corp/other:1", "registry.corp/other", "registry.corp"],
		["registry with another port", "registry.corp:5001/x:1", "registry.corp:5001/x", "registry.corp:5001"],
		["allowed registry with a port", "ghcr.io:443/x:1", "ghcr.io:443/x", "ghcr.io:443"],
		["prefix without path boundary", "quay.io/acme-evil/app:1", "quay.io/acme-evil/app", "quay.io"],
		["prefix without path boundary, no slash", "gcr.io/distroless-evil/x:1", "gcr.io/distroless-evil/x", "gcr.io"],
		["repository prefix of the exact one", "registry.corp/team/application:1", "registry.corp/team/application", "registry.corp"],
		["localhost", "localhost:5000/x:1", "localhost:5000/x", "localhost:5000"],
	]
	registry.violations(image, null, params) == {refused(image, name, host)}
}

test_wildcard if {
	registry.violations("anything.example/x:1", null, {"allowedRegistries": ["*"]}) == set()
}

test_fail_closed_without_params[desc] if {
	some [desc, p, shown] in [
		["null", null, "allowedRegistries [], allowedRepositoryPrefixes []"],
		["empty", {}, "allowedRegistries [], allowedRepositoryPrefixes []"],
		["empty lists", {"allowedRegistries": [], "allowedRepositoryPrefixes": []}, "allowedRegistries [], allowedRepositoryPrefixes []"],
		["null list", {"allowedRegistries": null, "enabled": true}, "allowedRegistries [], allowedRepositoryPrefixes []"],
	]
	registry.violations("ghcr.io/x:1", null, p) == {sprintf(`registry: image "ghcr.io/x:1" is from "ghcr.io/x", which is not allowed (%s); use an image from an allowed registry, or allow "ghcr.io"`, [shown])}
}

test_invalid_params[desc] if {
	some [desc, p, want] in [
		["string instead of list", {"allowedRegistries": "ghcr.io"}, {"allowedRegistries must be a list of strings"}],
		["number in list", {"allowedRepositoryPrefixes": [1]}, {"allowedRepositoryPrefixes must be a list of strings"}],
		["empty entry", {"allowedRegistries": ["ghcr.io", ""]}, {"allowedRegistries[1] is empty"}],
	]
	registry.violations("ghcr.io/x:1", null, p) == {sprintf(`registry: image "ghcr.io/x:1" cannot be checked: %s; fix the registry parameters`, [m]) | some m in want}
}

test_invalid_reference if {
	registry.violations("ghcr.io/x@sha256:abc", null, params) == {`registry: image "ghcr.io/x@sha256:abc" is not a valid image reference: digest "sha256:abc" is not valid (sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex>, lower-case); fix the image name`}
}
