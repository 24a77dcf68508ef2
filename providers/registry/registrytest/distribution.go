package registrytest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ToolsDir is where `make tools` puts the test binaries:
// $IMAGEGATE_TOOLS, else $HOME/.cache/imagegate/tools.
func ToolsDir() string {
	if dir := os.Getenv("IMAGEGATE_TOOLS"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return filepath.Join(".cache", "imagegate", "tools")
	}
	return filepath.Join(home, ".cache", "imagegate", "tools")
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// DistributionBinary returns the distribution registry `make tools` built
// and fails the test if it is missing.
func DistributionBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(ToolsDir(), "bin", "registry")
	if !executable(bin) {
		t.Fatalf("distribution registry not built: run `make tools` (looked for %s)", bin)
	}
	return bin
}

// StartDistribution runs the distribution registry (`registry serve`, no
// referrers API) over plain HTTP on a free 127.0.0.1 port with storage in a
// temporary directory, stops it with the test, and returns its host:port
// once /v2/ answers 200. Its log is printed if the test fails.
func StartDistribution(t testing.TB) string {
	t.Helper()
	bin := DistributionBinary(t)
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	cfg := filepath.Join(dir, "config.yml")
	conf := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), host)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	out := &SyncBuffer{}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = out, out
	// No tracing: the registry would otherwise export OpenTelemetry traces
	// to localhost:4318 and log every failure to do so.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true"}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("distribution registry log (last lines):\n%s", Tail(out.String(), 40))
		}
	})

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return host
			}
			err = errors.New(resp.Status)
		}
		select {
		case werr := <-exited:
			exited <- werr // for the cleanup
			t.Fatalf("distribution registry exited: %v\n%s", werr, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("distribution registry at %s not ready after 15s (last error %v)\n%s", host, err, out.String())
		}
	}
}

// Executable reports whether path is an executable file.
func Executable(path string) bool { return executable(path) }

// SyncBuffer collects a process's output while it runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d lines omitted]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
