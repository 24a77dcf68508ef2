package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		desc      string
		hosts     []string
		wantDNS   []string
		wantIPs   []string
		verifyFor []string // names the server cert must verify for
	}{
		{
			desc:      "default hosts",
			wantDNS:   []string{"localhost", "imagegate", "imagegate.imagegate-system", "imagegate.imagegate-system.svc"},
			wantIPs:   []string{"127.0.0.1", "::1"},
			verifyFor: []string{"localhost", "127.0.0.1", "::1", "imagegate.imagegate-system.svc"},
		},
		{
			desc:      "custom hosts",
			hosts:     []string{"imagegate.example.com", "10.1.2.3", "fd00::7"},
			wantDNS:   []string{"imagegate.example.com"},
			wantIPs:   []string{"10.1.2.3", "fd00::7"},
			verifyFor: []string{"imagegate.example.com", "10.1.2.3"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "nested", "certs")
			b, err := Generate(dir, tc.hosts)
			if err != nil {
				t.Fatalf("Generate() error = %v", err)
			}
			if b.Dir != dir || b.CAFile != filepath.Join(dir, "ca.crt") || b.CertFile != filepath.Join(dir, "tls.crt") ||
				b.KeyFile != filepath.Join(dir, "tls.key") || b.ClientCertFile != filepath.Join(dir, "client.crt") ||
				b.ClientKeyFile != filepath.Join(dir, "client.key") {
				t.Errorf("Generate() = %+v, want files ca.crt, tls.crt, tls.key, client.crt, client.key in %s", b, dir)
			}
			caFile, err := os.ReadFile(b.CAFile)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(caFile, b.CAPEM) {
				t.Error("CAPEM differs from the contents of ca.crt")
			}

			// Permissions.
			for path, want := range map[string]fs.FileMode{dir: 0o700, b.KeyFile: 0o600, b.ClientKeyFile: 0o600} {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != want {
					t.Errorf("mode of %s = %v, want %v", path, got, want)
				}
			}

			ca := parseCertFile(t, b.CAFile)
			srv := parseCertFile(t, b.CertFile)
			cli := parseCertFile(t, b.ClientCertFile)

			if !ca.IsCA || ca.Subject.CommonName != "imagegate dev CA" {
				t.Errorf("CA: IsCA = %v, CN = %q; want true, %q", ca.IsCA, ca.Subject.CommonName, "imagegate dev CA")
			}
			if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
				t.Errorf("CA key is %T, want ECDSA P-256", ca.PublicKey)
			}
			if d := ca.NotAfter.Sub(time.Now()); d < 364*24*time.Hour || d > 366*24*time.Hour {
				t.Errorf("CA expires in %v, want about one year", d)
			}
			if err := ca.CheckSignatureFrom(ca); err != nil {
				t.Errorf("CA is not self-signed: %v", err)
			}
			if cli.Subject.CommonName != "gatekeeper-dev-client" {
				t.Errorf("client CN = %q, want %q", cli.Subject.CommonName, "gatekeeper-dev-client")
			}

			serials := map[string]bool{}
			for _, c := range []*x509.Certificate{ca, srv, cli} {
				if c.SerialNumber.Sign() <= 0 {
					t.Errorf("%s: serial %v is not positive", c.Subject.CommonName, c.SerialNumber)
				}
				serials[c.SerialNumber.String()] = true
			}
			if len(serials) != 3 {
				t.Errorf("serials are not unique: %v", serials)
			}

			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("server cert does not verify for ServerAuth: %v", err)
			}
			if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("client cert does not verify for ClientAuth: %v", err)
			}
			if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
				t.Error("client cert verifies for ServerAuth, want ClientAuth only")
			}

			if !slices.Equal(srv.DNSNames, tc.wantDNS) {
				t.Errorf("server DNSNames = %q, want %q", srv.DNSNames, tc.wantDNS)
			}
			var ips []string
			for _, ip := range srv.IPAddresses {
				ips = append(ips, ip.String())
			}
			var wantIPs []string
			for _, ip := range tc.wantIPs {
				wantIPs = append(wantIPs, net.ParseIP(ip).String())
			}
			if !slices.Equal(ips, wantIPs) {
				t.Errorf("server IPAddresses = %q, want %q", ips, wantIPs)
			}
			for _, h := range tc.verifyFor {
				if err := srv.VerifyHostname(h); err != nil {
					t.Errorf("server cert VerifyHostname(%q) error = %v", h, err)
				}
			}

			// The generated server pair and client CA load in a Reloader.
			if _, err := NewReloader(Options{CertFile: b.CertFile, KeyFile: b.KeyFile, ClientCAFile: b.CAFile}); err != nil {
				t.Errorf("NewReloader(generated bundle) error = %v", err)
			}
		})
	}
}

func TestGenerateIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	first, err := Generate(dir, nil)
	if err != nil {
		t.Fatalf("Generate() error = %v", err)
	}
	files := []string{first.CAFile, first.CertFile, first.KeyFile, first.ClientCertFile, first.ClientKeyFile}
	// Pin mtimes in the past so any rewrite is visible.
	past := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	contents := map[string][]byte{}
	for _, f := range files {
		if err := os.Chtimes(f, past, past); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		contents[f] = data
	}

	for _, hosts := range [][]string{nil, {"localhost", "127.0.0.1"}} {
		second, err := Generate(dir, hosts)
		if err != nil {
			t.Fatalf("second Generate(%q) error = %v", hosts, err)
		}
		if !bytes.Equal(second.CAPEM, first.CAPEM) {
			t.Errorf("second Generate(%q) returned a different CAPEM", hosts)
		}
		if !reflect.DeepEqual(second, first) {
			t.Errorf("second Generate(%q) = %+v, want %+v", hosts, second, first)
		}
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(past) {
			t.Errorf("%s was rewritten (mtime %v, want %v)", f, fi.ModTime(), past)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, contents[f]) {
			t.Errorf("%s content changed", f)
		}
	}
}

func TestGenerateRefuses(t *testing.T) {
	tests := []struct {
		desc  string
		setup func(t *testing.T, dir string) // prepares dir before Generate
		hosts []string
		want  string // the error must mention this
	}{
		{
			desc: "server cert exists without ca.crt",
			setup: func(t *testing.T, dir string) {
				mustWrite(t, filepath.Join(dir, "tls.crt"), "keep me")
			},
			want: "tls.crt",
		},
		{
			desc: "existing ca.crt is not PEM",
			setup: func(t *testing.T, dir string) {
				mustWrite(t, filepath.Join(dir, "ca.crt"), "garbage")
			},
			want: "ca.crt",
		},
		{
			desc: "existing bundle with a broken server key",
			setup: func(t *testing.T, dir string) {
				if _, err := Generate(dir, nil); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "tls.key"), []byte("garbage"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: "tls.key",
		},
		{
			desc: "existing bundle signed by another CA",
			setup: func(t *testing.T, dir string) {
				if _, err := Generate(dir, nil); err != nil {
					t.Fatal(err)
				}
				other := generate(t)
				copyFile(t, other.CAFile, filepath.Join(dir, "ca.crt"))
			},
			want: "does not verify",
		},
		{
			desc: "existing bundle does not cover a requested host",
			setup: func(t *testing.T, dir string) {
				if _, err := Generate(dir, nil); err != nil {
					t.Fatal(err)
				}
			},
			hosts: []string{"imagegate.example.com"},
			want:  "imagegate.example.com",
		},
		{
			desc:  "no usable host",
			setup: func(*testing.T, string) {},
			hosts: []string{""},
			want:  "no usable name",
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			before := snapshot(t, dir)
			b, err := Generate(dir, tc.hosts)
			if err == nil {
				t.Fatalf("Generate() = %+v, want error", b)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Generate() error = %v, want it to mention %q", err, tc.want)
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("Generate() changed %s: before %v, after %v", dir, keys(before), keys(after))
			}
		})
	}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(data)
	}
	return m
}

func keys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
