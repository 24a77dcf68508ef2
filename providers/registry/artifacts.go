package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagegate/imagegate/providers/facts"
)

// Referrers lists the manifests that refer to d: the OCI referrers API, or
// its sha256-<hex> fallback tag on registries without it. No referrers is an
// empty list; a listing that could not be read is an error (transient unless
// the registry said something definitive), never "none".
func (c *Client) Referrers(ctx context.Context, image string, d name.Digest) ([]v1.Descriptor, error) {
	if err := c.guard.CheckRegistry(canonicalRegistry(d.RegistryStr())); err != nil {
		return nil, &facts.Error{Code: facts.CodeNotAllowed, Image: image, Err: err}
	}
	// Reuse the shared puller: its per-repository transport is already
	// authenticated, so a referrers call costs no extra ping or token round trip.
	return authRetry(ctx, c, d.Context(), func(ctx context.Context, p *remote.Puller) ([]v1.Descriptor, error) {
		idx, err := remote.Referrers(d, remote.Reuse(p), remote.WithContext(ctx))
		if err != nil {
			return nil, wrap(image, "list referrers of "+d.DigestStr(), err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, wrap(image, "list referrers of "+d.DigestStr(), err)
		}
		return m.Manifests, nil
	})
}

// Manifest fetches the raw manifest at ref (a tag or a digest), verified
// against the digest when ref is one. A missing manifest is a not_found
// *facts.Error: for a signature tag that means "nothing stored there".
func (c *Client) Manifest(ctx context.Context, image string, ref name.Reference) ([]byte, v1.Descriptor, error) {
	if err := c.guard.CheckRegistry(canonicalRegistry(ref.Context().RegistryStr())); err != nil {
		return nil, v1.Descriptor{}, &facts.Error{Code: facts.CodeNotAllowed, Image: image, Err: err}
	}
	d, err := authRetry(ctx, c, ref.Context(), func(ctx context.Context, p *remote.Puller) (*remote.Descriptor, error) {
		return p.Get(ctx, ref)
	})
	if err != nil {
		return nil, v1.Descriptor{}, wrap(image, "get manifest "+ref.Identifier(), err)
	}
	return d.Manifest, d.Descriptor, nil
}

// Blob fetches the blob d of at most max bytes and checks it against d.
func (c *Client) Blob(ctx context.Context, image string, d name.Digest, max int64) ([]byte, error) {
	if err := c.guard.CheckRegistry(canonicalRegistry(d.RegistryStr())); err != nil {
		return nil, &facts.Error{Code: facts.CodeNotAllowed, Image: image, Err: err}
	}
	b, err := authRetry(ctx, c, d.Context(), func(ctx context.Context, p *remote.Puller) ([]byte, error) {
		layer, err := p.Layer(withBodyLimit(ctx, max), d)
		if err != nil {
			return nil, wrap(image, "get blob "+d.DigestStr(), err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, wrap(image, "get blob "+d.DigestStr(), err)
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, max+1))
		if err != nil {
			return nil, wrap(image, "read blob "+d.DigestStr(), err)
		}
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, facts.Errorf(facts.CodeInvalidContent, image, "blob %s is larger than the limit of %d bytes", d.DigestStr(), max)
	}
	// ggcr verifies while streaming to EOF; a limited read may stop short,
	// so check the digest here as well.
	sum := sha256.Sum256(b)
	if want := d.DigestStr(); strings.HasPrefix(want, "sha256:") && "sha256:"+hex.EncodeToString(sum[:]) != want {
		return nil, facts.Errorf(facts.CodeUnavailable, image, "blob %s: content does not match its digest", want)
	}
	return b, nil
}
