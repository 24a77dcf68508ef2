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

	mu        sync.Mutex
	files     map[string][]byte // path under URL → content
	signers   map[string]sigsig.Signer
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	down      bool
	earlier   [][]byte // timestamp.json as served before each PublishTarget
	requests  atomic.Int64
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
	r := &TUFRepository{files: files, signers: signers, targets: targetsMD, snapshot: snapshotMD, timestamp: timestampMD}
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
	down := r.down
	r.mu.Unlock()
	if down {
		http.Error(w, "mirror down", http.StatusServiceUnavailable)
		return
	}
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
	tf, ok := r.targets.Signed.Targets[name]
	if !ok {
		t.Fatalf("signaturetest: TamperTarget: no target %q", name)
	}
	// The version the signed metadata lists now.
	r.files["targets/"+hex.EncodeToString(tf.Hashes["sha256"])+"."+name] = content
}

// PublishTarget publishes a new version of target name (a rotated
// trusted_root.json, say), as a repository owner does: the targets metadata
// lists the new content under its hash and is re-signed with a bumped
// version, then snapshot and timestamp follow. Earlier versions stay served
// (consistent snapshots), so a client mid-update is not broken.
func (r *TUFRepository) PublishTarget(t testing.TB, name string, content []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.publish(name, content); err != nil {
		t.Fatalf("signaturetest: PublishTarget: %v", err)
	}
}

func (r *TUFRepository) publish(name string, content []byte) error {
	tf, err := metadata.TargetFile().FromBytes(name, content, "sha256")
	if err != nil {
		return err
	}
	r.files["targets/"+hex.EncodeToString(tf.Hashes["sha256"])+"."+name] = content
	r.earlier = append(r.earlier, r.files[metadata.TIMESTAMP+".json"])
	r.targets.Signed.Targets[name] = tf
	r.targets.Signed.Version++
	r.snapshot.Signed.Meta[metadata.TARGETS+".json"] = metadata.MetaFile(r.targets.Signed.Version)
	r.snapshot.Signed.Version++
	r.timestamp.Signed.Meta[metadata.SNAPSHOT+".json"] = metadata.MetaFile(r.snapshot.Signed.Version)
	r.timestamp.Signed.Version++

	r.targets.ClearSignatures()
	if _, err := r.targets.Sign(r.signers[metadata.TARGETS]); err != nil {
		return err
	}
	r.snapshot.ClearSignatures()
	if _, err := r.snapshot.Sign(r.signers[metadata.SNAPSHOT]); err != nil {
		return err
	}
	r.timestamp.ClearSignatures()
	if _, err := r.timestamp.Sign(r.signers[metadata.TIMESTAMP]); err != nil {
		return err
	}
	tb, err := r.targets.ToBytes(true)
	if err != nil {
		return err
	}
	sb, err := r.snapshot.ToBytes(true)
	if err != nil {
		return err
	}
	tsb, err := r.timestamp.ToBytes(true)
	if err != nil {
		return err
	}
	r.files[fmt.Sprintf("%d.%s.json", r.targets.Signed.Version, metadata.TARGETS)] = tb
	r.files[fmt.Sprintf("%d.%s.json", r.snapshot.Signed.Version, metadata.SNAPSHOT)] = sb
	r.files[metadata.TIMESTAMP+".json"] = tsb
	return nil
}

// RollBack serves the timestamp.json from before the last PublishTarget
// again (validly signed, not expired): a mirror replaying old metadata to
// bring back an earlier target. A client that remembers the versions it saw
// must refuse it.
func (r *TUFRepository) RollBack(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.earlier) == 0 {
		t.Fatal("signaturetest: RollBack: nothing published yet")
	}
	r.files[metadata.TIMESTAMP+".json"] = r.earlier[len(r.earlier)-1]
}

// SetDown makes the mirror answer every request with 503 (down is true) or
// serve again (false).
func (r *TUFRepository) SetDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// Requests is how many HTTP requests the repository has answered.
func (r *TUFRepository) Requests() int64 { return r.requests.Load() }

// String describes the repository for test logs.
func (r *TUFRepository) String() string { return fmt.Sprintf("TUF repository at %s", r.URL) }
