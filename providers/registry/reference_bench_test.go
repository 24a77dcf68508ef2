package registry_test

import (
	"testing"

	"github.com/imagegate/imagegate/providers/registry"
)

// BenchmarkParse: registry.Parse on the key shapes admission sees, with an
// insecure func (as the server passes one), which costs a probe parse.
func BenchmarkParse(b *testing.B) {
	insecure := func(r string) bool { return r == "localhost:5000" }
	const dgst = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	for _, bc := range []struct{ desc, key string }{
		{desc: "short", key: "nginx"},
		{desc: "tag", key: "ghcr.io/acme/app:1.4"},
		{desc: "digest", key: "ghcr.io/acme/app@" + dgst},
		{desc: "tag+digest", key: "ghcr.io/acme/app:1.4@" + dgst},
		{desc: "insecure-port", key: "localhost:5000/team/app:v1@" + dgst},
	} {
		b.Run(bc.desc, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := registry.Parse(bc.key, insecure); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
