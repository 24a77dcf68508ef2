//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ca is a throwaway certificate authority whose certificate is written to
// File. Every key is ECDSA P-256 and lives only for the test run.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	File string // PEM certificate
	PEM  []byte
}

// keyPair is a certificate and its key on disk.
type keyPair struct {
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t *testing.T, path, typ string, der []byte) []byte {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// newCA writes dir/<name>.crt.
func newCA(t *testing.T, dir, name string) *ca {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "imagegate e2e " + name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := &ca{cert: cert, key: key, File: filepath.Join(dir, name+".crt")}
	c.PEM = writePEM(t, c.File, "CERTIFICATE", der)
	return c
}

// certSpec says what a leaf certificate is for.
type certSpec struct {
	CommonName   string
	Organization []string // system:masters for the cluster admin
	IPs          []net.IP
	DNSNames     []string
	Server       bool // ExtKeyUsageServerAuth
	Client       bool // ExtKeyUsageClientAuth
}

// issue writes dir/<name>.crt and dir/<name>.key signed by c.
func (c *ca) issue(t *testing.T, dir, name string, s certSpec) keyPair {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: s.CommonName, Organization: s.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		IPAddresses:  s.IPs,
		DNSNames:     s.DNSNames,
	}
	if s.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if s.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	kp := keyPair{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	kp.CertPEM = writePEM(t, kp.CertFile, "CERTIFICATE", der)
	kp.KeyPEM = writePEM(t, kp.KeyFile, "EC PRIVATE KEY", keyDER)
	return kp
}

// serviceAccountKeys writes the token signing key (dir/sa.key) and its
// public key (dir/sa.pub) for kube-apiserver.
func serviceAccountKeys(t *testing.T, dir string) (private, public string) {
	t.Helper()
	key := newKey(t)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	private, public = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	writePEM(t, private, "EC PRIVATE KEY", keyDER)
	writePEM(t, public, "PUBLIC KEY", pubDER)
	return private, public
}
