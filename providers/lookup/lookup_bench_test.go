package lookup

import (
	"context"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

// BenchmarkFactsWarm: Service.Facts on a key whose facts (and tag) are
// cached, warmed once against a real in-process registry; the registry must
// see no request while the benchmark runs.
func BenchmarkFactsWarm(b *testing.B) {
	reg := registrytest.New(b)
	d := reg.PushImage(b, "team/app", "v1", registrytest.Image{Created: created})
	s := newService(b, reg, Options{TagTTL: time.Hour})
	ctx := context.Background()
	keys := []struct{ desc, key string }{
		{desc: "digest", key: reg.Host + "/team/app@" + d.String()},
		{desc: "tag", key: reg.Host + "/team/app:v1"},
		{desc: "tag+digest", key: reg.Host + "/team/app:v1@" + d.String()},
	}
	for _, k := range keys {
		if _, err := s.Facts(ctx, k.key); err != nil {
			b.Fatal(err)
		}
	}
	reg.ResetCounts()
	for _, k := range keys {
		b.Run(k.desc, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Facts(ctx, k.key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(k.desc+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Facts(ctx, k.key); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	if n := reg.Total(); n != 0 {
		b.Errorf("registry saw %d requests during warm lookups, want 0", n)
	}
}
