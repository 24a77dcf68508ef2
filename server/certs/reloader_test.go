package certs

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHandshake(t *testing.T) {
	b := generate(t)
	other := generate(t)

	tests := []struct {
		desc       string
		minVersion uint16 // Options.MinVersion
		client     *tls.Config
		wantErr    bool
		wantVer    uint16
	}{
		{
			desc:    "TLS 1.3 client trusting the dev CA",
			client:  &tls.Config{RootCAs: pool(t, b.CAPEM), NextProtos: []string{"h2", "http/1.1"}},
			wantVer: tls.VersionTLS13,
		},
		{
			desc:    "TLS 1.2-max client refused by default",
			client:  &tls.Config{RootCAs: pool(t, b.CAPEM), MaxVersion: tls.VersionTLS12},
			wantErr: true,
		},
		{
			desc:       "TLS 1.2-max client accepted with MinVersion TLS 1.2",
			minVersion: tls.VersionTLS12,
			client:     &tls.Config{RootCAs: pool(t, b.CAPEM), MaxVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}},
			wantVer:    tls.VersionTLS12,
		},
		{
			desc:    "client trusting another CA refuses the server",
			client:  &tls.Config{RootCAs: pool(t, other.CAPEM)},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r, err := NewReloader(Options{CertFile: b.CertFile, KeyFile: b.KeyFile, MinVersion: tc.minVersion})
			if err != nil {
				t.Fatalf("NewReloader() error = %v", err)
			}
			srv := startServer(t, r)

			cs, err := handshake(srv, tc.client)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("handshake succeeded with %s, want error", tls.VersionName(cs.Version))
				}
				if err := get(srv, tc.client); err == nil {
					t.Fatal("GET succeeded, want error")
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake error = %v, want success", err)
			}
			if cs.Version != tc.wantVer {
				t.Errorf("negotiated %s, want %s", tls.VersionName(cs.Version), tls.VersionName(tc.wantVer))
			}
			if cs.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN protocol = %q, want %q", cs.NegotiatedProtocol, "h2")
			}
			if got, want := cs.PeerCertificates[0].SerialNumber, leafSerial(t, b.CertFile); got.Cmp(want) != 0 {
				t.Errorf("served serial = %v, want %v", got, want)
			}
			if err := get(srv, tc.client); err != nil {
				t.Errorf("GET error = %v, want success", err)
			}
		})
	}
}

func TestTLSConfig(t *testing.T) {
	b := generate(t)
	tests := []struct {
		desc           string
		opts           Options
		wantMin        uint16
		wantClientAuth tls.ClientAuthType
	}{
		{
			desc:           "defaults",
			opts:           Options{CertFile: b.CertFile, KeyFile: b.KeyFile},
			wantMin:        tls.VersionTLS13,
			wantClientAuth: tls.NoClientCert,
		},
		{
			desc:           "client CA and TLS 1.2",
			opts:           Options{CertFile: b.CertFile, KeyFile: b.KeyFile, ClientCAFile: b.CAFile, MinVersion: tls.VersionTLS12},
			wantMin:        tls.VersionTLS12,
			wantClientAuth: tls.RequireAndVerifyClientCert,
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r, err := NewReloader(tc.opts)
			if err != nil {
				t.Fatalf("NewReloader() error = %v", err)
			}
			cfg := r.TLSConfig()
			if cfg.MinVersion != tc.wantMin {
				t.Errorf("MinVersion = %s, want %s", tls.VersionName(cfg.MinVersion), tls.VersionName(tc.wantMin))
			}
			if got, want := strings.Join(cfg.NextProtos, ","), "h2,http/1.1"; got != want {
				t.Errorf("NextProtos = %q, want %q", got, want)
			}
			if cfg.GetConfigForClient == nil {
				t.Fatal("GetConfigForClient is nil")
			}
			hc, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
			if err != nil {
				t.Fatalf("GetConfigForClient() error = %v", err)
			}
			if hc.ClientAuth != tc.wantClientAuth {
				t.Errorf("per-handshake ClientAuth = %v, want %v", hc.ClientAuth, tc.wantClientAuth)
			}
			if (hc.ClientCAs != nil) != (tc.opts.ClientCAFile != "") {
				t.Errorf("per-handshake ClientCAs set = %v, want %v", hc.ClientCAs != nil, tc.opts.ClientCAFile != "")
			}
			if len(hc.Certificates) != 1 || hc.GetConfigForClient != nil || hc.MinVersion != tc.wantMin {
				t.Errorf("per-handshake config: %d certificates, GetConfigForClient set = %v, MinVersion %s; want 1, false, %s",
					len(hc.Certificates), hc.GetConfigForClient != nil, tls.VersionName(hc.MinVersion), tls.VersionName(tc.wantMin))
			}
		})
	}
}

func TestRotation(t *testing.T) {
	a, b := generate(t), generate(t)
	roots := pool(t, a.CAPEM, b.CAPEM)
	o := servedCopy(t, a, false)
	var rec reloadRecorder
	o.CheckInterval = testInterval
	o.OnReload = rec.record
	r, err := NewReloader(o)
	if err != nil {
		t.Fatalf("NewReloader() error = %v", err)
	}
	srv := startServer(t, r)

	if got, want := servedSerial(t, srv, roots), leafSerial(t, a.CertFile); got.Cmp(want) != 0 {
		t.Fatalf("before rotation: served serial = %v, want %v", got, want)
	}
	copyFile(t, b.CertFile, o.CertFile)
	copyFile(t, b.KeyFile, o.KeyFile)
	waitForCheck()
	if got, want := servedSerial(t, srv, roots), leafSerial(t, b.CertFile); got.Cmp(want) != 0 {
		t.Fatalf("after rotation: served serial = %v, want %v (new leaf)", got, want)
	}
	if calls := rec.calls(); len(calls) != 1 || calls[0] != nil {
		t.Errorf("OnReload calls = %v, want exactly one with nil error", calls)
	}

	// No further change: later checks must not reload again.
	waitForCheck()
	servedSerial(t, srv, roots)
	if calls := rec.calls(); len(calls) != 1 {
		t.Errorf("OnReload calls after an unchanged check = %v, want still 1", calls)
	}
}

func TestRotationViaSymlinkSwap(t *testing.T) {
	// Kubernetes secret volumes rotate by re-pointing the ..data symlink.
	a, b := generate(t), generate(t)
	roots := pool(t, a.CAPEM, b.CAPEM)
	dir := t.TempDir()
	for name, src := range map[string]string{"a": a.Dir, "b": b.Dir} {
		if err := os.Symlink(src, filepath.Join(dir, "..data_"+name)); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "..data")
	if err := os.Symlink("..data_a", data); err != nil {
		t.Fatal(err)
	}
	o := Options{
		CertFile:      filepath.Join(data, "tls.crt"),
		KeyFile:       filepath.Join(data, "tls.key"),
		CheckInterval: testInterval,
	}
	r, err := NewReloader(o)
	if err != nil {
		t.Fatalf("NewReloader() error = %v", err)
	}
	srv := startServer(t, r)
	if got, want := servedSerial(t, srv, roots), leafSerial(t, a.CertFile); got.Cmp(want) != 0 {
		t.Fatalf("before swap: served serial = %v, want %v", got, want)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("..data_b", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	waitForCheck()
	if got, want := servedSerial(t, srv, roots), leafSerial(t, b.CertFile); got.Cmp(want) != 0 {
		t.Fatalf("after swap: served serial = %v, want %v (new leaf)", got, want)
	}
}

func TestBrokenRotation(t *testing.T) {
	a, b := generate(t), generate(t)
	roots := pool(t, a.CAPEM, b.CAPEM)
	keyPEM, err := os.ReadFile(a.KeyFile)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		desc     string
		break_   func(t *testing.T, o Options) // leaves o's files broken
		wantFile func(o Options) string        // file the error must name
	}{
		{
			desc:     "garbage key file",
			break_:   func(t *testing.T, o Options) { writeFile(t, o.KeyFile, []byte("garbage\n")) },
			wantFile: func(o Options) string { return o.KeyFile },
		},
		{
			desc: "half-written cert file",
			break_: func(t *testing.T, o Options) {
				data, err := os.ReadFile(b.CertFile)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, o.CertFile, data[:len(data)/2])
			},
			wantFile: func(o Options) string { return o.CertFile },
		},
		{
			desc:     "new cert with old key",
			break_:   func(t *testing.T, o Options) { copyFile(t, b.CertFile, o.CertFile) },
			wantFile: func(o Options) string { return o.KeyFile },
		},
		{
			desc:     "cert file removed",
			break_:   func(t *testing.T, o Options) { os.Remove(o.CertFile) },
			wantFile: func(o Options) string { return o.CertFile },
		},
		{
			desc:     "client CA file emptied",
			break_:   func(t *testing.T, o Options) { writeFile(t, o.ClientCAFile, nil) },
			wantFile: func(o Options) string { return o.ClientCAFile },
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			o := servedCopy(t, a, true)
			var rec reloadRecorder
			var logs syncBuffer
			o.CheckInterval = testInterval
			o.OnReload = rec.record
			o.Logger = testLogger(&logs)
			r, err := NewReloader(o)
			if err != nil {
				t.Fatalf("NewReloader() error = %v", err)
			}
			srv := startServer(t, r)
			client := &tls.Config{RootCAs: roots}
			clientA, err := tls.LoadX509KeyPair(a.ClientCertFile, a.ClientKeyFile)
			if err != nil {
				t.Fatal(err)
			}
			client.Certificates = []tls.Certificate{clientA}
			oldSerial := leafSerial(t, a.CertFile)

			tc.break_(t, o)
			for i := range 2 { // the failed load is retried on later checks
				waitForCheck()
				if got := servedSerial(t, srv, roots); got.Cmp(oldSerial) != 0 {
					t.Fatalf("check %d after breaking: served serial = %v, want old %v", i, got, oldSerial)
				}
				if err := get(srv, client); err != nil {
					t.Fatalf("check %d after breaking: GET error = %v, want success with the old set", i, err)
				}
			}
			calls := rec.calls()
			if len(calls) < 2 {
				t.Fatalf("OnReload called %d times, want at least 2 (one per check while broken)", len(calls))
			}
			want := tc.wantFile(o)
			for _, err := range calls {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("OnReload(err = %v), want an error that mentions %q", err, want)
				}
			}
			log := logs.String()
			if !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "file="+want) {
				t.Errorf("log = %q, want an ERROR entry with file=%s", log, want)
			}
			if strings.Contains(log, "PRIVATE KEY") || strings.Contains(log, string(keyPEM[30:60])) {
				t.Errorf("log = %q, contains key material", log)
			}

			// Complete the rotation properly: the new set is served.
			copyFile(t, b.CertFile, o.CertFile)
			copyFile(t, b.KeyFile, o.KeyFile)
			copyFile(t, b.CAFile, o.ClientCAFile)
			waitForCheck()
			if got, want := servedSerial(t, srv, roots), leafSerial(t, b.CertFile); got.Cmp(want) != 0 {
				t.Fatalf("after fixing: served serial = %v, want new %v", got, want)
			}
			if calls := rec.calls(); calls[len(calls)-1] != nil {
				t.Errorf("last OnReload error = %v, want nil after fixing the files", calls[len(calls)-1])
			}
			// The client CA was rotated too: the old client cert is now refused.
			if err := get(srv, client); err == nil {
				t.Error("GET with a client cert from the old CA succeeded after CA rotation, want error")
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	b, other := generate(t), generate(t)
	clientCert, err := tls.LoadX509KeyPair(b.ClientCertFile, b.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	otherClientCert, err := tls.LoadX509KeyPair(other.ClientCertFile, other.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate from the right CA but for server use only.
	serverCertAsClient, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
	if err != nil {
		t.Fatal(err)
	}

	r, err := NewReloader(Options{CertFile: b.CertFile, KeyFile: b.KeyFile, ClientCAFile: b.CAFile})
	if err != nil {
		t.Fatalf("NewReloader() error = %v", err)
	}
	srv := startServer(t, r)

	tests := []struct {
		desc    string
		certs   []tls.Certificate
		wantErr bool
	}{
		{desc: "no client certificate", wantErr: true},
		{desc: "client certificate from another CA", certs: []tls.Certificate{otherClientCert}, wantErr: true},
		{desc: "server-auth-only certificate from the CA", certs: []tls.Certificate{serverCertAsClient}, wantErr: true},
		{desc: "client.crt from the bundle", certs: []tls.Certificate{clientCert}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := get(srv, &tls.Config{RootCAs: pool(t, b.CAPEM), Certificates: tc.certs})
			if tc.wantErr && err == nil {
				t.Fatal("GET succeeded, want the handshake to fail")
			}
			if !tc.wantErr && err != nil {
				t.Fatalf("GET error = %v, want success", err)
			}
		})
	}
}

func TestNewReloaderErrors(t *testing.T) {
	b, other := generate(t), generate(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	empty := filepath.Join(dir, "empty.pem")
	missing := filepath.Join(dir, "missing.pem")
	for path, data := range map[string]string{notPEM: "this is not PEM\n", empty: ""} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		desc string
		opts Options
		want []string // substrings the error must contain
	}{
		{
			desc: "missing cert file",
			opts: Options{CertFile: missing, KeyFile: b.KeyFile},
			want: []string{missing, "no such file"},
		},
		{
			desc: "missing key file",
			opts: Options{CertFile: b.CertFile, KeyFile: missing},
			want: []string{missing, "no such file"},
		},
		{
			desc: "missing client CA file",
			opts: Options{CertFile: b.CertFile, KeyFile: b.KeyFile, ClientCAFile: missing},
			want: []string{missing, "no such file"},
		},
		{
			desc: "cert file not PEM",
			opts: Options{CertFile: notPEM, KeyFile: b.KeyFile},
			want: []string{notPEM, "no PEM data"},
		},
		{
			desc: "key file not PEM",
			opts: Options{CertFile: b.CertFile, KeyFile: notPEM},
			want: []string{notPEM, "no PEM data"},
		},
		{
			desc: "cert file holds a key",
			opts: Options{CertFile: b.KeyFile, KeyFile: b.KeyFile},
			want: []string{b.KeyFile, "no certificates"},
		},
		{
			desc: "key does not match cert",
			opts: Options{CertFile: b.CertFile, KeyFile: other.KeyFile},
			want: []string{other.KeyFile, b.CertFile, "does not match"},
		},
		{
			desc: "empty client CA file",
			opts: Options{CertFile: b.CertFile, KeyFile: b.KeyFile, ClientCAFile: empty},
			want: []string{empty, "no PEM data"},
		},
		{
			desc: "client CA file without certificates",
			opts: Options{CertFile: b.CertFile, KeyFile: b.KeyFile, ClientCAFile: b.KeyFile},
			want: []string{b.KeyFile, "no certificates"},
		},
		{
			desc: "MinVersion TLS 1.1 refused",
			opts: Options{CertFile: b.CertFile, KeyFile: b.KeyFile, MinVersion: tls.VersionTLS11},
			want: []string{"MinVersion", "TLS 1.1"},
		},
		{
			desc: "no cert file",
			opts: Options{KeyFile: b.KeyFile},
			want: []string{"CertFile"},
		},
		{
			desc: "no key file",
			opts: Options{CertFile: b.CertFile},
			want: []string{"KeyFile"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r, err := NewReloader(tc.opts)
			if err == nil {
				t.Fatalf("NewReloader() = %v, want error", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewReloader() error = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

// TestConcurrentHandshakesDuringRotation runs handshakes while the files are
// rewritten non-atomically (so checks also see mismatched halves); every
// handshake must succeed. Run with -race.
func TestConcurrentHandshakesDuringRotation(t *testing.T) {
	a, b := generate(t), generate(t)
	roots := pool(t, a.CAPEM, b.CAPEM)
	o := servedCopy(t, a, false)
	o.CheckInterval = time.Millisecond
	var rec reloadRecorder
	o.OnReload = rec.record
	r, err := NewReloader(o)
	if err != nil {
		t.Fatalf("NewReloader() error = %v", err)
	}
	srv := startServer(t, r)

	// A bounded number of handshakes (ephemeral ports are finite) while the
	// files are rotated back and forth until the handshakers are done.
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				if _, err := handshake(srv, &tls.Config{RootCAs: roots}); err != nil {
					t.Errorf("handshake during rotation error = %v, want success", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	finished := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	for i := 0; ; i++ {
		src := b
		if i%2 == 1 {
			src = a
		}
		copyFile(t, src.CertFile, o.CertFile)
		time.Sleep(2 * time.Millisecond)
		copyFile(t, src.KeyFile, o.KeyFile)
		time.Sleep(3 * time.Millisecond)
		if src == a && finished() { // end with a's files installed
			break
		}
	}

	// The last rotation installed a's files; the next handshake serves a.
	time.Sleep(5 * time.Millisecond)
	if got, want := servedSerial(t, srv, roots), leafSerial(t, a.CertFile); got.Cmp(want) != 0 {
		t.Errorf("after rotations: served serial = %v, want %v", got, want)
	}
	if len(rec.calls()) == 0 {
		t.Error("OnReload never called during rotations")
	}
}
