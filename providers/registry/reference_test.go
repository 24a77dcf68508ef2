package registry

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/imagegate/imagegate/providers/facts"
)

var (
	testDigest  = "sha256:" + strings.Repeat("a1", 32)
	testDigest2 = "sha256:" + strings.Repeat("0f", 32)
)

// parseCases is the corpus for TestParse and the seeds of FuzzParse.
var parseCases = []struct {
	desc     string
	key      string
	want     facts.Reference
	hasTag   bool // Ref.Tag set
	wantCode facts.Code
}{
	{
		desc:   "docker hub short name takes library and latest",
		key:    "nginx",
		want:   facts.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "latest"},
		hasTag: true,
	},
	{
		desc:   "docker.io without library namespace",
		key:    "docker.io/nginx:1.25",
		want:   facts.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1.25"},
		hasTag: true,
	},
	{
		desc:   "index.docker.io alias",
		key:    "index.docker.io/library/nginx",
		want:   facts.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "latest"},
		hasTag: true,
	},
	{
		desc:   "registry-1.docker.io alias gets the library namespace too",
		key:    "registry-1.docker.io/nginx:1",
		want:   facts.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1"},
		hasTag: true,
	},
	{
		desc:   "registry host is case-insensitive",
		key:    "Docker.IO/nginx:1",
		want:   facts.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1"},
		hasTag: true,
	},
	{
		desc:   "upper-case registry host is lower-cased",
		key:    "GHCR.io/acme/app:v1",
		want:   facts.Reference{Registry: "ghcr.io", Repository: "acme/app", Tag: "v1"},
		hasTag: true,
	},
	{
		desc:   "user namespace on docker hub",
		key:    "bitnami/redis:7",
		want:   facts.Reference{Registry: "docker.io", Repository: "bitnami/redis", Tag: "7"},
		hasTag: true,
	},
	{
		desc:   "localhost with port and nested repository",
		key:    "localhost:5000/a/b:t",
		want:   facts.Reference{Registry: "localhost:5000", Repository: "a/b", Tag: "t"},
		hasTag: true,
	},
	{
		desc:   "localhost without port",
		key:    "localhost/x",
		want:   facts.Reference{Registry: "localhost", Repository: "x", Tag: "latest"},
		hasTag: true,
	},
	{
		desc: "ip with port and digest",
		key:  "127.0.0.1:5000/x@" + testDigest,
		want: facts.Reference{Registry: "127.0.0.1:5000", Repository: "x", Digest: testDigest},
	},
	{
		desc:   "tag and digest keeps both",
		key:    "ghcr.io/acme/app:1.4@" + testDigest,
		want:   facts.Reference{Registry: "ghcr.io", Repository: "acme/app", Tag: "1.4", Digest: testDigest},
		hasTag: true,
	},
	{
		desc: "registry port is not a tag",
		key:  "registry:5000/repo@" + testDigest,
		want: facts.Reference{Registry: "registry:5000", Repository: "repo", Digest: testDigest},
	},
	{
		desc:   "short name with tag and digest",
		key:    "nginx:1@" + testDigest2,
		want:   facts.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1", Digest: testDigest2},
		hasTag: true,
	},
	{
		desc:   "bracketed ipv6 registry",
		key:    "[::1]:5000/x:1",
		want:   facts.Reference{Registry: "[::1]:5000", Repository: "x", Tag: "1"},
		hasTag: true,
	},
	{
		desc:   "separators inside components",
		key:    "ghcr.io/a_b/c__d/e-f/g.h/i--j:tag.1-2_3",
		want:   facts.Reference{Registry: "ghcr.io", Repository: "a_b/c__d/e-f/g.h/i--j", Tag: "tag.1-2_3"},
		hasTag: true,
	},
	{
		desc:   "upper-case tag is fine",
		key:    "ghcr.io/x:V1.0-RC",
		want:   facts.Reference{Registry: "ghcr.io", Repository: "x", Tag: "V1.0-RC"},
		hasTag: true,
	},
	{desc: "upper-case repository", key: "ghcr.io/Acme/app:1", wantCode: facts.CodeInvalidReference},
	{desc: "upper-case short name", key: "Nginx", wantCode: facts.CodeInvalidReference},
	{desc: "empty", key: "", wantCode: facts.CodeInvalidReference},
	{desc: "space inside", key: "ghcr.io/acme/app :1", wantCode: facts.CodeInvalidReference},
	{desc: "leading space", key: " nginx", wantCode: facts.CodeInvalidReference},
	{desc: "trailing newline", key: "nginx\n", wantCode: facts.CodeInvalidReference},
	{desc: "control character", key: "ngi\x00nx", wantCode: facts.CodeInvalidReference},
	{desc: "escape character", key: "nginx\x1b[31m", wantCode: facts.CodeInvalidReference},
	{desc: "delete character", key: "nginx\x7f", wantCode: facts.CodeInvalidReference},
	{desc: "url scheme", key: "https://ghcr.io/x", wantCode: facts.CodeInvalidReference},
	{desc: "too long", key: "ghcr.io/" + strings.Repeat("a/", 520) + "x", wantCode: facts.CodeInvalidReference},
	{desc: "tag too long", key: "ghcr.io/x:" + strings.Repeat("t", 129), wantCode: facts.CodeInvalidReference},
	{desc: "short digest", key: "ghcr.io/x@sha256:abc", wantCode: facts.CodeInvalidReference},
	{desc: "upper-case digest hex", key: "ghcr.io/x@sha256:" + strings.Repeat("A", 64), wantCode: facts.CodeInvalidReference},
	{desc: "empty digest", key: "ghcr.io/x@", wantCode: facts.CodeInvalidReference},
	{desc: "two digests", key: "ghcr.io/x@" + testDigest + "@" + testDigest, wantCode: facts.CodeInvalidReference},
	{desc: "digest without repository", key: "@" + testDigest, wantCode: facts.CodeInvalidReference},
	{desc: "empty path component", key: "a//b", wantCode: facts.CodeInvalidReference},
	{desc: "leading slash", key: "/a", wantCode: facts.CodeInvalidReference},
	{desc: "trailing slash", key: "ghcr.io/a/", wantCode: facts.CodeInvalidReference},
	{desc: "registry only", key: "ghcr.io/", wantCode: facts.CodeInvalidReference},
	{desc: "component starts with separator", key: "ghcr.io/_a", wantCode: facts.CodeInvalidReference},
	{desc: "component ends with separator", key: "ghcr.io/a-", wantCode: facts.CodeInvalidReference},
	{desc: "double dot", key: "ghcr.io/a..b", wantCode: facts.CodeInvalidReference},
	{desc: "trailing colon", key: "nginx:", wantCode: facts.CodeInvalidReference},
	{desc: "trailing colon before digest", key: "nginx:@" + testDigest, wantCode: facts.CodeInvalidReference},
	{desc: "two tags", key: "a:b:c", wantCode: facts.CodeInvalidReference},
	{desc: "non-ascii", key: "ghcr.io/caf\u00e9", wantCode: facts.CodeInvalidReference},
	{desc: "invalid utf-8 in registry", key: "\xff\xfe.example/x", wantCode: facts.CodeInvalidReference},
	{desc: "non-ascii registry", key: "r\u00e9g.example/x", wantCode: facts.CodeInvalidReference},
	{desc: "empty label in registry", key: "ghcr..io/x", wantCode: facts.CodeInvalidReference},
	{desc: "registry label ends with dash", key: "ghcr-.io/x", wantCode: facts.CodeInvalidReference},
	{desc: "empty port", key: "ghcr.io:/x", wantCode: facts.CodeInvalidReference},
	{desc: "registry too long", key: strings.Repeat("a.", 130) + "io/x", wantCode: facts.CodeInvalidReference},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.desc, func(t *testing.T) {
			ref, err := Parse(tc.key, nil)
			if tc.wantCode != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error %s", tc.key, ref.Facts, tc.wantCode)
				}
				if got := facts.CodeOf(err); got != tc.wantCode {
					t.Fatalf("Parse(%q) error code = %s (%v), want %s", tc.key, got, err, tc.wantCode)
				}
				var fe *facts.Error
				if !errors.As(err, &fe) || fe.Image != tc.key {
					t.Errorf("Parse(%q) error = %#v, want a *facts.Error naming the key", tc.key, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v, want %+v", tc.key, err, tc.want)
			}
			if ref.Facts != tc.want {
				t.Errorf("Parse(%q).Facts = %+v, want %+v", tc.key, ref.Facts, tc.want)
			}
			if ref.Key != tc.key {
				t.Errorf("Parse(%q).Key = %q, want the key as written", tc.key, ref.Key)
			}
			if got := ref.Tag != nil; got != tc.hasTag {
				t.Errorf("Parse(%q): Tag set = %v, want %v", tc.key, got, tc.hasTag)
			}
			if got, want := ref.Digest != nil, tc.want.Digest != ""; got != want {
				t.Errorf("Parse(%q): Digest set = %v, want %v", tc.key, got, want)
			}
			if ref.Digest != nil && ref.Digest.DigestStr() != tc.want.Digest {
				t.Errorf("Parse(%q).Digest = %s, want %s", tc.key, ref.Digest.DigestStr(), tc.want.Digest)
			}
			if ref.Tag != nil && ref.Tag.TagStr() != tc.want.Tag {
				t.Errorf("Parse(%q).Tag = %s, want %s", tc.key, ref.Tag.TagStr(), tc.want.Tag)
			}
			// What is fetched must be what the facts name.
			if got, want := canonicalRegistry(ref.Repository().RegistryStr()), tc.want.Registry; got != want {
				t.Errorf("Parse(%q).Repository() registry = %s, want %s", tc.key, got, want)
			}
			if got := ref.Repository().RepositoryStr(); got != tc.want.Repository {
				t.Errorf("Parse(%q).Repository() = %s, want %s", tc.key, got, tc.want.Repository)
			}
		})
	}
}

func TestParseInsecure(t *testing.T) {
	for _, tc := range []struct {
		desc       string
		key        string
		insecure   func(string) bool
		wantScheme string
	}{
		{desc: "listed registry is plain http", key: "reg.example:5000/x:1", insecure: func(r string) bool { return r == "reg.example:5000" }, wantScheme: "http"},
		{desc: "listed registry with digest", key: "reg.example:5000/x@" + testDigest, insecure: func(r string) bool { return r == "reg.example:5000" }, wantScheme: "http"},
		{desc: "other registry stays https", key: "ghcr.io/x:1", insecure: func(r string) bool { return r == "reg.example:5000" }, wantScheme: "https"},
		{desc: "nil insecure", key: "reg.example:5000/x:1", wantScheme: "https"},
		{desc: "docker hub alias asked as docker.io", key: "index.docker.io/x:1", insecure: func(r string) bool { return r == "docker.io" }, wantScheme: "http"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ref, err := Parse(tc.key, tc.insecure)
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tc.key, err)
			}
			if got := ref.Repository().Scheme(); got != tc.wantScheme {
				t.Errorf("Parse(%q).Repository().Scheme() = %s, want %s", tc.key, got, tc.wantScheme)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		desc string
		key  string
		want string
	}{
		{desc: "short name", key: "nginx", want: "docker.io/library/nginx:latest"},
		{desc: "digest only", key: "ghcr.io/x@" + testDigest, want: "ghcr.io/x@" + testDigest},
		{desc: "tag and digest", key: "nginx:1@" + testDigest, want: "docker.io/library/nginx:1@" + testDigest},
		{desc: "port", key: "localhost:5000/a/b:t", want: "localhost:5000/a/b:t"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ref, err := Parse(tc.key, nil)
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tc.key, err)
			}
			if got := ref.Canonical(); got != tc.want {
				t.Errorf("Parse(%q).Canonical() = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.key)
	}
	f.Add("docker.io/library/nginx:1@" + testDigest)
	f.Add("a.b.c:1/d/e/f:g@" + testDigest2)
	f.Fuzz(func(t *testing.T, key string) {
		ref, err := Parse(key, nil)
		if err != nil {
			if got := facts.CodeOf(err); got != facts.CodeInvalidReference {
				t.Fatalf("Parse(%q) error code = %s (%v), want %s", key, got, err, facts.CodeInvalidReference)
			}
			return
		}
		r := ref.Facts
		if r.Registry == "" || r.Repository == "" {
			t.Fatalf("Parse(%q).Facts = %+v, want registry and repository", key, r)
		}
		if r.Repository != strings.ToLower(r.Repository) || r.Registry != strings.ToLower(r.Registry) {
			t.Fatalf("Parse(%q).Facts = %+v, want lower-case registry and repository", key, r)
		}
		if r.Tag == "" && r.Digest == "" {
			t.Fatalf("Parse(%q).Facts = %+v, want a tag or a digest", key, r)
		}
		if strings.IndexFunc(key, func(c rune) bool { return c > unicode.MaxASCII || unicode.IsSpace(c) || !unicode.IsPrint(c) }) >= 0 {
			t.Fatalf("Parse(%q) accepted a space, control or non-ASCII character: %+v", key, r)
		}
		canon := ref.Canonical()
		again, err := Parse(canon, nil)
		if err != nil {
			t.Fatalf("Parse(%q).Canonical() = %q does not parse: %v", key, canon, err)
		}
		if again.Facts != r {
			t.Fatalf("Parse(%q).Facts = %+v, want %+v (re-parsed from %q)", canon, again.Facts, r, key)
		}
		if again.Canonical() != canon {
			t.Fatalf("Parse(%q).Canonical() = %q, want %q", canon, again.Canonical(), canon)
		}
	})
}
