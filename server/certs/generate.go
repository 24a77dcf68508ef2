package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names written by Generate.
const (
	caCertName     = "ca.crt"
	serverCertName = "tls.crt"
	serverKeyName  = "tls.key"
	clientCertName = "client.crt"
	clientKeyName  = "client.key"
)

// Subject common names used by Generate.
const (
	devCACommonName     = "imagegate dev CA"
	devServerCommonName = "imagegate"
	devClientCommonName = "gatekeeper-dev-client"
)

const devValidity = 365 * 24 * time.Hour

// defaultHosts are the server certificate SANs Generate uses when none are
// given: loopback plus the in-cluster service names.
var defaultHosts = []string{
	"localhost",
	"127.0.0.1",
	"::1",
	"imagegate",
	"imagegate.imagegate-system",
	"imagegate.imagegate-system.svc",
}

// Bundle describes development TLS material written by [Generate].
type Bundle struct {
	Dir            string // directory holding the files
	CAFile         string // ca.crt: self-signed CA certificate
	CertFile       string // tls.crt: server certificate signed by the CA
	KeyFile        string // tls.key: server private key
	ClientCertFile string // client.crt: client certificate signed by the CA
	ClientKeyFile  string // client.key: client private key
	CAPEM          []byte // contents of CAFile (e.g. for a caBundle)
}

func newBundle(dir string) *Bundle {
	return &Bundle{
		Dir:            dir,
		CAFile:         filepath.Join(dir, caCertName),
		CertFile:       filepath.Join(dir, serverCertName),
		KeyFile:        filepath.Join(dir, serverKeyName),
		ClientCertFile: filepath.Join(dir, clientCertName),
		ClientKeyFile:  filepath.Join(dir, clientKeyName),
	}
}

// Generate writes development TLS material into dir (created with mode 0700
// if missing; key files get mode 0600):
//
//   - ca.crt: self-signed ECDSA P-256 CA, valid for one year, CN "imagegate dev CA"
//   - tls.crt, tls.key: server certificate (ExtKeyUsage ServerAuth) signed by
//     the CA, with hosts as SANs (IP literals as IP addresses, everything else
//     as DNS names); if hosts is empty: localhost, 127.0.0.1, ::1, imagegate,
//     imagegate.imagegate-system, imagegate.imagegate-system.svc
//   - client.crt, client.key: client certificate (ExtKeyUsage ClientAuth)
//     signed by the CA, CN "gatekeeper-dev-client"
//
// If dir already contains ca.crt, nothing is written: the existing files are
// validated (they must load and chain to the CA, and the server certificate
// must cover any explicitly given hosts) and their Bundle is returned. If
// ca.crt is missing but another of the files exists, Generate refuses to
// overwrite it. Generate writes ca.crt last, so its presence means the set
// was written completely.
func Generate(dir string, hosts []string) (*Bundle, error) {
	if dir == "" {
		return nil, errors.New("certs: Generate: dir is required")
	}
	b := newBundle(dir)
	if _, err := os.Stat(b.CAFile); err == nil {
		return loadExisting(b, hosts)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("certs: Generate: %w", err)
	}
	for _, p := range []string{b.CertFile, b.KeyFile, b.ClientCertFile, b.ClientKeyFile} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("certs: Generate: %q exists but %q does not; refusing to overwrite (remove the directory to regenerate)", p, b.CAFile)
		}
	}
	if len(hosts) == 0 {
		hosts = defaultHosts
	}
	var ips []net.IP
	var dnsNames []string
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			dnsNames = append(dnsNames, h)
		}
	}
	if len(ips)+len(dnsNames) == 0 {
		return nil, fmt.Errorf("certs: Generate: hosts %q contain no usable name", hosts)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: Generate: %w", err)
	}

	now := time.Now()
	notBefore, notAfter := now.Add(-time.Hour), now.Add(devValidity) // tolerate clock skew

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: Generate: CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: devCACommonName, Organization: []string{"imagegate"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, ca, err := createCert(caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("certs: Generate: CA certificate: %w", err)
	}

	serverTmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: devServerCommonName, Organization: []string{"imagegate"}},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips,
		DNSNames:    dnsNames,
	}
	serverCert, serverKey, err := issue(serverTmpl, ca, caKey)
	if err != nil {
		return nil, fmt.Errorf("certs: Generate: server certificate: %w", err)
	}

	clientTmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: devClientCommonName, Organization: []string{"imagegate"}},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	clientCert, clientKey, err := issue(clientTmpl, ca, caKey)
	if err != nil {
		return nil, fmt.Errorf("certs: Generate: client certificate: %w", err)
	}

	b.CAPEM = pemEncode("CERTIFICATE", caDER)
	files := []struct {
		path string
		data []byte
		perm fs.FileMode
	}{
		{b.CertFile, serverCert, 0o644},
		{b.KeyFile, serverKey, 0o600},
		{b.ClientCertFile, clientCert, 0o644},
		{b.ClientKeyFile, clientKey, 0o600},
		{b.CAFile, b.CAPEM, 0o644}, // last: marks the set complete
	}
	var written []string
	for _, f := range files {
		if err := writeNew(f.path, f.data, f.perm); err != nil {
			for _, p := range written {
				os.Remove(p)
			}
			return nil, fmt.Errorf("certs: Generate: %w", err)
		}
		written = append(written, f.path)
	}
	return b, nil
}

// issue creates a fresh P-256 key and a certificate for it signed by ca,
// returning both PEM encoded.
func issue(tmpl, ca *x509.Certificate, caKey crypto.Signer) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, _, err := createCert(tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemEncode("CERTIFICATE", der), pemEncode("PRIVATE KEY", keyDER), nil
}

// createCert signs tmpl with a fresh random 128-bit serial number.
func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1)) // strictly positive
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return der, c, nil
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeNew creates path exclusively, so an existing file is never replaced.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// loadExisting validates the files of a previously generated bundle and
// returns it without modifying anything.
func loadExisting(b *Bundle, hosts []string) (*Bundle, error) {
	caPEM, err := os.ReadFile(b.CAFile)
	if err != nil {
		return nil, fmt.Errorf("certs: Generate: existing CA file %q: %w", b.CAFile, err)
	}
	cas, err := parseCertificates(caPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: Generate: existing CA file %q: %w", b.CAFile, err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	pairs := []struct {
		cert, key string
		usage     x509.ExtKeyUsage
	}{
		{b.CertFile, b.KeyFile, x509.ExtKeyUsageServerAuth},
		{b.ClientCertFile, b.ClientKeyFile, x509.ExtKeyUsageClientAuth},
	}
	var serverLeaf *x509.Certificate
	for i, p := range pairs {
		m, err := loadMaterial(p.cert, p.key, "")
		if err != nil {
			return nil, fmt.Errorf("certs: Generate: existing bundle in %q: %w", b.Dir, err)
		}
		if _, err := m.cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{p.usage}}); err != nil {
			return nil, fmt.Errorf("certs: Generate: existing cert file %q does not verify against %q (remove %q to regenerate): %w", p.cert, b.CAFile, b.Dir, err)
		}
		if i == 0 {
			serverLeaf = m.cert.Leaf
		}
	}
	for _, h := range hosts {
		if err := serverLeaf.VerifyHostname(h); err != nil {
			return nil, fmt.Errorf("certs: Generate: existing cert file %q does not cover host %q (remove %q to regenerate): %w", b.CertFile, h, b.Dir, err)
		}
	}
	b.CAPEM = caPEM
	return b, nil
}
