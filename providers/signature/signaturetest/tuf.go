package signaturetest

// A TUF repository such as Sigstore's (tuf-repo-cdn.sigstore.dev), built
// with go-tuf/v2's metadata API and served over HTTP on 127.0.0.1: root,
// targets, snapshot and timestamp, one Ed25519 key per role, consistent
// snapshots (versioned metadata, hash-prefixed targets), as sigstore-go's TUF
// client expects.

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sigsig "github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TUFRepository is a signed TUF repository served over plain HTTP.
type TUFRepository struct {
	// URL is the mirror's base URL (http://127.0.0.1:port).
	URL string
	// Root is 1.root.json, the trust anchor a client starts from.
	Root []byte

	mu       sync.Mutex
	files    map[string][]byte // path under URL → content
	requests atomic.Int64
}

// NewTUFRepository signs a repository whose targets are targets (name →
// content; Sigstore's is "trusted_root.json") and serves it until the test
// ends.
func NewTUFRepository(t testing.TB, targets map[string][]byte) *TUFRepository {
	t.Helper()
	r, err := newTUFRepository(targets)
	if err != nil {
		t.Fatalf("signaturetest: TUF repository: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func newTUFRepository(targets map[string][]byte) (*TUFRepository, error) {
	now := time.Now().UTC()
	rootMD := metadata.Root(now.Add(365 * 24 * time.Hour))
	targetsMD := metadata.Targets(now.Add(7 * 24 * time.Hour))
	snapshotMD := metadata.Snapshot(now.Add(7 * 24 * time.Hour))
	timestampMD := metadata.Timestamp(now.Add(24 * time.Hour))

	files := map[string][]byte{}
	for name, content := range targets {
		tf, err := metadata.TargetFile().FromBytes(name, content, "sha256")
		if err != nil {
			return nil, err
		}
		targetsMD.Signed.Targets[name] = tf
		// Consistent snapshot: targets/<sha256>.<name>.
		files["targets/"+hex.EncodeToString(tf.Hashes["sha256"])+"."+name] = content
	}

	signers := map[string]sigsig.Signer{}
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		key, err := metadata.KeyFromPublicKey(priv.Public())
		if err != nil {
			return nil, err
		}
		if err := rootMD.Signed.AddKey(key, role); err != nil {
			return nil, err
		}
		if signers[role], err = sigsig.LoadSigner(priv, crypto.Hash(0)); err != nil {
			return nil, err
		}
	}

	if _, err := rootMD.Sign(signers[metadata.ROOT]); err != nil {
		return nil, err
	}
	if _, err := targetsMD.Sign(signers[metadata.TARGETS]); err != nil {
		return nil, err
	}
	if _, err := snapshotMD.Sign(signers[metadata.SNAPSHOT]); err != nil {
		return nil, err
	}
	if _, err := timestampMD.Sign(signers[metadata.TIMESTAMP]); err != nil {
		return nil, err
	}
	var err error
	r := &TUFRepository{files: files}
	if r.Root, err = rootMD.ToBytes(true); err != nil {
		return nil, err
	}
	r.files["1.root.json"] = r.Root
	if r.files["1.targets.json"], err = targetsMD.ToBytes(true); err != nil {
		return nil, err
	}
	if r.files["1.snapshot.json"], err = snapshotMD.ToBytes(true); err != nil {
		return nil, err
	}
	if r.files["timestamp.json"], err = timestampMD.ToBytes(true); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *TUFRepository) serve(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	r.mu.Lock()
	b, ok := r.files[strings.TrimPrefix(req.URL.Path, "/")]
	r.mu.Unlock()
	if !ok || req.Method != http.MethodGet {
		http.NotFound(w, req) // also how a client learns there is no 2.root.json
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// WriteRoot writes Root to dir/root.json and returns the path.
func (r *TUFRepository) WriteRoot(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "root.json")
	if err := os.WriteFile(p, r.Root, 0o644); err != nil {
		t.Fatalf("signaturetest: %v", err)
	}
	return p
}

// TamperTarget serves content for target name in place of what the signed
// targets metadata lists (a compromised mirror or CDN): a client must reject it.
func (r *TUFRepository) TamperTarget(t testing.TB, name string, content []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.files {
		if strings.HasPrefix(p, "targets/") && strings.HasSuffix(p, "."+name) {
			r.files[p] = content
			return
		}
	}
	t.Fatalf("signaturetest: TamperTarget: no target %q", name)
}

// Requests is how many HTTP requests the repository has answered.
func (r *TUFRepository) Requests() int64 { return r.requests.Load() }

// String describes the repository for test logs.
func (r *TUFRepository) String() string { return fmt.Sprintf("TUF repository at %s", r.URL) }
