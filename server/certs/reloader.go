package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const defaultCheckInterval = time.Second

// Options configures a [Reloader].
type Options struct {
	// CertFile and KeyFile are the PEM serving certificate (leaf first,
	// optionally followed by intermediates) and its private key. Required.
	CertFile, KeyFile string
	// ClientCAFile is an optional PEM bundle of CA certificates. When set,
	// clients must present a certificate that verifies against it
	// (tls.RequireAndVerifyClientCert).
	ClientCAFile string
	// ClientCertOptional, with ClientCAFile, verifies a client certificate
	// when one is presented (tls.VerifyClientCertIfGiven) and leaves it to
	// the HTTP layer to require one per path: kubelet health probes present
	// none. A certificate that does not verify still fails the handshake.
	ClientCertOptional bool
	// MinVersion is the minimum TLS version; 0 means tls.VersionTLS13.
	// Versions below TLS 1.2 are refused.
	MinVersion uint16
	// CheckInterval is the minimum time between two checks of the files for
	// changes; checks happen on handshakes. 0 means one second.
	CheckInterval time.Duration
	// Logger receives reload events; nil discards them.
	Logger *slog.Logger
	// OnReload, if set, is called after every reload attempt (not after the
	// initial load in NewReloader) with nil on success or the error that
	// made the attempt fail. It is called synchronously from a handshake, so
	// it should be fast (e.g. increment a metric).
	OnReload func(err error)
}

// Reloader serves TLS material loaded from files and reloads it when the
// files change. It is safe for concurrent use.
type Reloader struct {
	opts     Options
	paths    []string // CertFile, KeyFile[, ClientCAFile]
	interval time.Duration
	log      *slog.Logger

	cur atomic.Pointer[material]

	start     time.Time    // monotonic base for nextCheck
	nextCheck atomic.Int64 // nanoseconds since start
	checkMu   sync.Mutex   // serializes checks; handshakes never wait on it
}

// material is one consistent, successfully loaded set of files.
type material struct {
	cert      tls.Certificate
	clientCAs *x509.CertPool // nil without ClientCAFile
	stamps    []fileStamp    // parallel to Reloader.paths, taken before reading
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	modTime  time.Time
	size     int64
	dev, ino uint64
}

func (s fileStamp) equal(o fileStamp) bool {
	return s.modTime.Equal(o.modTime) && s.size == o.size && s.dev == o.dev && s.ino == o.ino
}

// NewReloader validates o and loads the certificate, key and optional client
// CA bundle. Errors name the offending file and the cause.
func NewReloader(o Options) (*Reloader, error) {
	if o.CertFile == "" {
		return nil, errors.New("certs: Options.CertFile is required")
	}
	if o.KeyFile == "" {
		return nil, errors.New("certs: Options.KeyFile is required")
	}
	switch o.MinVersion {
	case 0:
		o.MinVersion = tls.VersionTLS13
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("certs: Options.MinVersion %s refused: must be TLS 1.2 or TLS 1.3", tls.VersionName(o.MinVersion))
	}
	if o.CheckInterval < 0 {
		return nil, fmt.Errorf("certs: Options.CheckInterval %v is negative", o.CheckInterval)
	}
	r := &Reloader{
		opts:     o,
		paths:    []string{o.CertFile, o.KeyFile},
		interval: o.CheckInterval,
		log:      o.Logger,
		start:    time.Now(),
	}
	if o.ClientCAFile != "" {
		r.paths = append(r.paths, o.ClientCAFile)
	}
	if r.interval == 0 {
		r.interval = defaultCheckInterval
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	m, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur.Store(m)
	r.nextCheck.Store(int64(r.interval))
	r.log.Info("TLS material loaded", m.logAttrs(r)...)
	return r, nil
}

// TLSConfig returns a new server configuration with MinVersion and
// NextProtos (h2, http/1.1) set whose GetConfigForClient hands every
// handshake a clone of the returned Config carrying the current certificate
// and client CA pool. Fields set on the returned Config before it is put to
// use (for example CipherSuites) therefore apply to every handshake; changes
// made to copies of it do not.
func (r *Reloader) TLSConfig() *tls.Config {
	base := &tls.Config{
		MinVersion: r.opts.MinVersion,
		NextProtos: []string{"h2", "http/1.1"},
	}
	if r.opts.ClientCAFile != "" {
		base.ClientAuth = tls.RequireAndVerifyClientCert
		if r.opts.ClientCertOptional {
			base.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := r.current()
		c := base.Clone()
		c.GetConfigForClient = nil
		c.GetCertificate = nil
		c.Certificates = []tls.Certificate{m.cert}
		c.ClientCAs = m.clientCAs
		return c, nil
	}
	return base
}

// current returns the material to serve, reloading first if a check is due.
func (r *Reloader) current() *material {
	if time.Since(r.start) >= time.Duration(r.nextCheck.Load()) {
		r.check()
	}
	return r.cur.Load()
}

// check stats the files and reloads them if they changed. If another
// handshake is already checking, it returns immediately.
func (r *Reloader) check() {
	if !r.checkMu.TryLock() {
		return
	}
	defer r.checkMu.Unlock()
	now := time.Since(r.start)
	if now < time.Duration(r.nextCheck.Load()) {
		return // another handshake checked while we were getting here
	}
	r.nextCheck.Store(int64(now + r.interval))

	old := r.cur.Load()
	if !r.changed(old) {
		return
	}
	m, err := r.load()
	if err != nil {
		attrs := []any{slog.Any("error", err), slog.String("serving_serial", serialHex(old.cert.Leaf))}
		var fe *fileError
		if errors.As(err, &fe) {
			attrs = append(attrs, slog.String("file", fe.path))
		}
		r.log.Error("TLS material reload failed; still serving the previous certificate", attrs...)
		r.notify(err)
		return
	}
	r.cur.Store(m)
	r.log.Info("TLS material reloaded", m.logAttrs(r)...)
	r.notify(nil)
}

func (r *Reloader) notify(err error) {
	if r.opts.OnReload != nil {
		r.opts.OnReload(err)
	}
}

// changed reports whether any file differs from the loaded version. A file
// that cannot be stat'ed counts as changed so that load reports why.
func (r *Reloader) changed(m *material) bool {
	for i, p := range r.paths {
		s, err := stat(p)
		if err != nil || !s.equal(m.stamps[i]) {
			return true
		}
	}
	return false
}

func stat(path string) (fileStamp, error) {
	fi, err := os.Stat(path) // follows symlinks, as mounted secrets use them
	if err != nil {
		return fileStamp{}, err
	}
	dev, ino := fileIdentity(fi)
	return fileStamp{modTime: fi.ModTime(), size: fi.Size(), dev: dev, ino: ino}, nil
}

// readFile stats path and then reads it. Stamping before reading means a
// write racing with the read is seen as a change by the next check.
func readFile(path string) ([]byte, fileStamp, error) {
	s, err := stat(path)
	if err != nil {
		return nil, s, err
	}
	b, err := os.ReadFile(path)
	return b, s, err
}

// load reads and validates the complete set of files.
func (r *Reloader) load() (*material, error) {
	return loadMaterial(r.opts.CertFile, r.opts.KeyFile, r.opts.ClientCAFile)
}

// loadMaterial reads and validates a certificate, its key and, if
// clientCAFile is not empty, a CA bundle. Errors name the file.
func loadMaterial(certFile, keyFile, clientCAFile string) (*material, error) {
	m := &material{stamps: make([]fileStamp, 2, 3)}

	certPEM, s, err := readFile(certFile)
	if err != nil {
		return nil, fileErr("cert file", certFile, err)
	}
	m.stamps[0] = s
	chain, err := parseCertificates(certPEM)
	if err != nil {
		return nil, fileErr("cert file", certFile, err)
	}

	keyPEM, s, err := readFile(keyFile)
	if err != nil {
		return nil, fileErr("key file", keyFile, err)
	}
	m.stamps[1] = s
	if err := checkKeyPEM(keyPEM); err != nil {
		return nil, fileErr("key file", keyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Both files parsed on their own, so this is almost always a key
		// that does not belong to the certificate. The error text of
		// crypto/tls never contains key material.
		return nil, fileErr("key file", keyFile, fmt.Errorf("does not match cert file %q: %w", certFile, err))
	}
	if cert.Leaf == nil {
		cert.Leaf = chain[0]
	}
	m.cert = cert

	if clientCAFile != "" {
		caPEM, s, err := readFile(clientCAFile)
		if err != nil {
			return nil, fileErr("client CA file", clientCAFile, err)
		}
		m.stamps = append(m.stamps, s)
		cas, err := parseCertificates(caPEM)
		if err != nil {
			return nil, fileErr("client CA file", clientCAFile, err)
		}
		m.clientCAs = x509.NewCertPool()
		for _, c := range cas {
			m.clientCAs.AddCert(c)
		}
	}
	return m, nil
}

// fileError is a load failure attributed to one file.
type fileError struct {
	kind string // "cert file", "key file" or "client CA file"
	path string
	err  error
}

func fileErr(kind, path string, err error) error {
	return &fileError{kind: kind, path: path, err: err}
}

func (e *fileError) Error() string {
	return fmt.Sprintf("certs: %s %q: %v", e.kind, e.path, e.err)
}

func (e *fileError) Unwrap() error { return e.err }

// parseCertificates returns every CERTIFICATE block in data, in order. Other
// block types are ignored; at least one certificate is required.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	sawPEM := false
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		certs = append(certs, c)
	}
	switch {
	case !sawPEM:
		return nil, errors.New("no PEM data found (file empty, truncated or not PEM)")
	case len(certs) == 0:
		return nil, errors.New("contains no certificates (no PEM block of type CERTIFICATE)")
	}
	return certs, nil
}

// checkKeyPEM verifies that data holds a parseable private key, so that a
// damaged key file is reported as such rather than as a mismatch.
func checkKeyPEM(data []byte) error {
	sawPEM := false
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type != "PRIVATE KEY" && !strings.HasSuffix(block.Type, " PRIVATE KEY") {
			continue
		}
		if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
			return nil
		}
		return fmt.Errorf("PEM block of type %q is not a valid PKCS#8, PKCS#1 or SEC 1 private key", block.Type)
	}
	if !sawPEM {
		return errors.New("no PEM data found (file empty, truncated or not PEM)")
	}
	return errors.New("contains no PEM block of type PRIVATE KEY")
}

func (m *material) logAttrs(r *Reloader) []any {
	attrs := []any{
		slog.String("cert_file", r.opts.CertFile),
		slog.String("key_file", r.opts.KeyFile),
	}
	if leaf := m.cert.Leaf; leaf != nil {
		attrs = append(attrs,
			slog.String("subject", leaf.Subject.String()),
			slog.String("serial", serialHex(leaf)),
			slog.Time("not_after", leaf.NotAfter))
		if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			attrs = append(attrs, slog.Bool("outside_validity_period", true))
		}
	}
	if r.opts.ClientCAFile != "" {
		attrs = append(attrs, slog.String("client_ca_file", r.opts.ClientCAFile))
	}
	return attrs
}

func serialHex(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return hex.EncodeToString(c.SerialNumber.Bytes())
}
