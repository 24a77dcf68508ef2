package signature_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func getManifest(t *testing.T, ref name.Reference) *v1.Manifest {
	t.Helper()
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// rawManifest is a manifest pushed as exactly these bytes.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// putManifest pushes m by digest to repo (its blobs are already there).
func putManifest(t *testing.T, repo name.Repository, m *v1.Manifest) v1.Hash {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(repo.Digest(h.String()), rawManifest{b: b, mt: m.MediaType}); err != nil {
		t.Fatal(err)
	}
	return h
}

// tamperLegacySig replaces the payload of d's .sig tag with an edited copy,
// keeping the signature annotation.
func tamperLegacySig(t *testing.T, repo name.Repository, d v1.Hash) {
	t.Helper()
	tag := repo.Tag(tagFor(d) + ".sig")
	m := getManifest(t, tag)
	layer, err := remote.Layer(repo.Digest(m.Layers[0].Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	edited := bytes.Replace(buf.Bytes(), []byte(`"optional":null`), []byte(`"optional":{"x":"y"}`), 1)
	if bytes.Equal(edited, buf.Bytes()) {
		edited = append(bytes.TrimSuffix(buf.Bytes(), []byte("}")), []byte(`,"x":1}`)...)
	}
	nl := static.NewLayer(edited, m.Layers[0].MediaType)
	if err := remote.WriteLayer(repo, nl); err != nil {
		t.Fatal(err)
	}
	nd, _ := nl.Digest()
	m.Layers[0].Digest, m.Layers[0].Size = nd, int64(len(edited))
	b, _ := json.Marshal(m)
	if err := remote.Put(tag, rawManifest{b: b, mt: m.MediaType}); err != nil {
		t.Fatal(err)
	}
}
