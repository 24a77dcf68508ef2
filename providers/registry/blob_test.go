package registry_test

import (
	"bytes"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

// TestBlobLimitIsTheCallers: Blob reads up to the caller's limit (a
// signature bundle's, limits.bundleBytes), not limits.configBytes, which the
// transport applies to other blobs; past the caller's limit it is
// invalid_content.
func TestBlobLimitIsTheCallers(t *testing.T) {
	reg := registrytest.New(t)
	repo, err := name.NewRepository(reg.Host+"/team/blob", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("x"), 4096)
	layer := static.NewLayer(content, types.OCILayer)
	if err := remote.WriteLayer(repo, layer); err != nil {
		t.Fatal(err)
	}
	h, _ := layer.Digest()
	c := newClient(t, reg.Host, registry.Options{Limits: registry.Limits{ConfigBytes: 1024}})

	b, err := c.Blob(t.Context(), "img", repo.Digest(h.String()), 8192)
	if err != nil || !bytes.Equal(b, content) {
		t.Fatalf("Blob(max 8192) of a 4096-byte blob with configBytes 1024 = %d bytes, %v; want the blob", len(b), err)
	}
	_, err = c.Blob(t.Context(), "img", repo.Digest(h.String()), 2048)
	checkCode(t, "Blob(max 2048) of a 4096-byte blob", err, facts.CodeInvalidContent)
}
