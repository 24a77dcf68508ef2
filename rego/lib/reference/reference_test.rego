package imagegate.lib.reference_test

import data.imagegate.lib.reference

d1 := "sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"

d2 := "sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"

d384 := "sha384:b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"

d512 := "sha512:c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"

ok(registry, repository, tag, digest) := {
	"valid": true,
	"error": "",
	"registry": registry,
	"repository": repository,
	"tag": tag,
	"digest": digest,
	"implicitTag": false,
}

implicit(registry, repository) := object.union(ok(registry, repository, "latest", ""), {"implicitTag": true})

invalid(msg) := {
	"valid": false,
	"error": msg,
	"registry": "",
	"repository": "",
	"tag": "",
	"digest": "",
	"implicitTag": false,
}

test_parse_valid[desc] if {
	some [desc, image, want] in [
		["docker hub short name", "nginx", implicit("docker.io", "library/nginx")],
		["docker hub short name with tag", "nginx:1.25", ok("docker.io", "library/nginx", "1.25", "")],
		["docker hub user namespace", "bitnami/redis:7", ok("docker.io", "bitnami/redis", "7", "")],
		["docker.io without library", "docker.io/nginx:1", ok("docker.io", "library/nginx", "1", "")],
		["docker.io with library", "docker.io/library/nginx", implicit("docker.io", "library/nginx")],
		["index.docker.io alias", "index.docker.io/library/nginx:1", ok("docker.io", "library/nginx", "1", "")],
		["registry-1.docker.io alias gets library", "registry-1.docker.io/nginx:1", ok("docker.io", "library/nginx", "1", "")],
		["upper-case docker hub alias", "Docker.IO/nginx:1", ok("docker.io", "library/nginx", "1", "")],
		["upper-case registry", "GHCR.io/acme/app:v1", ok("ghcr.io", "acme/app", "v1", "")],
		["upper-case tag", "ghcr.io/x:V1.0-RC", ok("ghcr.io", "x", "V1.0-RC", "")],
		["nested repository", "ghcr.io/a/b/c/d:1", ok("ghcr.io", "a/b/c/d", "1", "")],
		["separators", "ghcr.io/a_b/c__d/e-f/g.h/i--j:tag.1-2_3", ok("ghcr.io", "a_b/c__d/e-f/g.h/i--j", "tag.1-2_3", "")],
		["localhost", "localhost/x", implicit("localhost", "x")],
		["localhost with port", "localhost:5000/a/b:t", ok("localhost:5000", "a/b", "t", "")],
		["host with port, no dot", "registry:5000/repo@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", ok("registry:5000", "repo", "", d1)],
		["ip with port and digest", "127.0.0.1:5000/x@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", ok("127.0.0.1:5000", "x", "", d1)],
		["bracketed ipv6", "[::1]:5000/x:1", ok("[::1]:5000", "x", "1", "")],
		["digest", "ghcr.io/acme/app@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", ok("ghcr.io", "acme/app", "", d1)],
		["tag and digest", "ghcr.io/acme/app:1.4@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", ok("ghcr.io", "acme/app", "1.4", d1)],
		["short name with tag and digest", "nginx:1@sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", ok("docker.io", "library/nginx", "1", d2)],
		["sha384", "ghcr.io/x@sha384:b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2", ok("ghcr.io", "x", "", d384)],
		["sha512", "ghcr.io/x@sha512:c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3", ok("ghcr.io", "x", "", d512)],
		["128-character tag", "ghcr.io/x:tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt", ok("ghcr.io", "x", "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt", "")],
		["tag starting with underscore", "ghcr.io/x:_1", ok("ghcr.io", "x", "_1", "")],
		["first component without dot is docker hub", "ghcr/x:1", ok("docker.io", "ghcr/x", "1", "")],
		["registry-looking repository on docker hub", "evil.example/ghcr.io/acme/app:1", ok("evil.example", "ghcr.io/acme/app", "1", "")],
		["lone host name is a docker hub repository", "ghcr.io", implicit("docker.io", "library/ghcr.io")],
		["underscore in host", "my_registry.local/x:1", ok("my_registry.local", "x", "1", "")],
	]
	reference.parse(image) == want
}

test_parse_invalid[desc] if {
	some [desc, image, want] in [
		["not a string", 42, "image reference must be a string"],
		["null", null, "image reference must be a string"],
		["empty", "", "empty image reference"],
		["too long", concat("", ["ghcr.io/", concat("/", ["a" | some _ in numbers.range(1, 600)])]), "image reference is 1207 characters, longer than 1024"],
		["two digests", "ghcr.io/x@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "more than one '@'"],
		["empty digest", "ghcr.io/x@", "empty digest after '@'"],
		["empty tag", "nginx:", "empty tag after ':'"],
		["empty tag before digest", "nginx:@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "empty tag after ':'"],
		["digest without repository", "@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "no repository"],
		["registry only", "ghcr.io/", "no repository"],
		["empty port", "ghcr.io:/x", "registry \"ghcr.io:\" is not a valid host or host:port"],
		["empty label", "ghcr..io/x", "registry \"ghcr..io\" is not a valid host or host:port"],
		["label ends with dash", "ghcr-.io/x", "registry \"ghcr-.io\" is not a valid host or host:port"],
		["url scheme", "https://ghcr.io/x", "registry \"https:\" is not a valid host or host:port"],
		["non-ascii registry", "r\u00e9g.example/x", "registry \"r\u00e9g.example\" is not a valid host or host:port"],
		["registry too long", concat("", [concat("", ["a." | some _ in numbers.range(1, 130)]), "io/x"]), sprintf("registry %q is not a valid host or host:port", [concat("", [concat("", ["a." | some _ in numbers.range(1, 130)]), "io"])])],
		["repository too long", concat("", ["ghcr.io/", concat("", ["a" | some _ in numbers.range(1, 256)])]), sprintf("repository %q is longer than 255 characters", [concat("", ["a" | some _ in numbers.range(1, 256)])])],
		["upper-case repository", "ghcr.io/Acme/app:1", repo_error("Acme/app")],
		["upper-case short name", "Nginx", repo_error("Nginx")],
		["upper-case localhost is not a registry", "LOCALHOST/x", repo_error("LOCALHOST/x")],
		["empty path component", "a//b", repo_error("a//b")],
		["leading slash", "/a", repo_error("/a")],
		["trailing slash", "ghcr.io/a/", repo_error("a/")],
		["component starts with separator", "ghcr.io/_a", repo_error("_a")],
		["component ends with separator", "ghcr.io/a-", repo_error("a-")],
		["double dot", "ghcr.io/a..b", repo_error("a..b")],
		["two tags", "a:b:c", repo_error("a:b")],
		["space", "ghcr.io/acme/app :1", repo_error("acme/app ")],
		["trailing newline", "nginx\n", repo_error("nginx\n")],
		["non-ascii repository", "ghcr.io/caf\u00e9", repo_error("caf\u00e9")],
		["tag too long", "ghcr.io/x:ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt", tag_error("ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt")],
		["tag starting with dot", "ghcr.io/x:.1", tag_error(".1")],
		["tag starting with dash", "ghcr.io/x:-1", tag_error("-1")],
		["tag with plus", "ghcr.io/x:1+build", tag_error("1+build")],
		["short digest", "ghcr.io/x@sha256:abc", digest_error("sha256:abc")],
		["upper-case digest", "ghcr.io/x@sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", digest_error("sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
		["unknown algorithm", "ghcr.io/x@md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", digest_error("md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")],
		["sha256 with sha512 length", "ghcr.io/x@sha256:c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3", digest_error("sha256:c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3")],
	]
	reference.parse(image) == invalid(want)
}

repo_error(repo) := sprintf("repository %q does not match the distribution grammar (lower-case letters, digits and single separators '.', '_', '__' or '-' in path components separated by single slashes)", [repo])

tag_error(tag) := sprintf("tag %q is not valid (up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-')", [tag])

digest_error(digest) := sprintf("digest %q is not valid (sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex>, lower-case)", [digest])

test_name if {
	reference.name(reference.parse("nginx:1")) == "docker.io/library/nginx"
	reference.name(reference.parse("GHCR.io/acme/app@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1")) == "ghcr.io/acme/app"
}

test_normalize_registry[desc] if {
	some [desc, host, want] in [
		["docker.io", "docker.io", "docker.io"],
		["index alias", "index.docker.io", "docker.io"],
		["registry-1 alias", "Registry-1.Docker.IO", "docker.io"],
		["other host lower-cased", "GHCR.IO", "ghcr.io"],
		["port kept", "Registry.Corp:5000", "registry.corp:5000"],
		["docker.io with a port is not docker hub", "docker.io:443", "docker.io:443"],
	]
	reference.normalize_registry(host) == want
}
