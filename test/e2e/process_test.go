//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a child process the suite started: tracked by PID, its
// stdout and stderr in <artifacts>/logs/<name>.log.
type process struct {
	Name    string
	PID     int
	LogFile string

	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

// processes is every process a test run started, in start order.
type processes struct {
	mu   sync.Mutex
	list []*process
	dir  string // log directory
}

// start runs bin with args, env on top of a minimal environment (PATH and
// HOME only, so nothing from the caller's shell, such as proxies, leaks in).
// The process is killed if the test binary dies (Pdeathsig) and stopped by
// stopAll otherwise. A restarted process gets a new log file (name.1.log …).
func (ps *processes) start(t *testing.T, name, bin string, args, env []string) *process {
	t.Helper()
	ps.mu.Lock()
	n := 0
	for _, p := range ps.list {
		if p.Name == name {
			n++
		}
	}
	ps.mu.Unlock()
	logName := name + ".log"
	if n > 0 {
		logName = fmt.Sprintf("%s.%d.log", name, n)
	}
	logPath := filepath.Join(ps.dir, logName)
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "# %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	// Pdeathsig: if the test binary dies (timeout panic, ^C) its children
	// die with it instead of holding ports. (It fires when the thread that
	// started the child exits; Go keeps its threads unless a goroutine exits
	// while locked to one, which nothing here does.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s (%s): %v", name, bin, err)
	}
	p := &process{Name: name, PID: cmd.Process.Pid, LogFile: logPath, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	t.Logf("started %s: pid %d, log %s", name, p.PID, logPath)
	return p
}

// Running reports whether the process has not exited.
func (p *process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited returns the exit error once the process has exited.
func (p *process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Kill sends SIGKILL and waits for the process to go.
func (p *process) Kill() {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, waits up to grace, then kills.
func (p *process) Stop(grace time.Duration) {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Tail is the last n lines of the process's log.
func (p *process) Tail(n int) string {
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d earlier lines in %s]", len(lines)-n, p.LogFile)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// stopAll stops every process, the last started first, and (when the test
// failed) prints the end of each log.
func (ps *processes) stopAll(t *testing.T) {
	ps.mu.Lock()
	list := append([]*process(nil), ps.list...)
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		p := list[i]
		wasRunning := p.Running()
		tail := ""
		if t.Failed() {
			tail = p.Tail(25) // before the shutdown noise
		}
		p.Stop(10 * time.Second)
		if t.Failed() {
			_, err := p.Exited()
			t.Logf("%s (pid %d, running until cleanup: %v, exit: %v) log tail:\n%s", p.Name, p.PID, wasRunning, err, tail)
		}
	}
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls check every interval until it returns nil, p exits, or
// timeout passes.
func waitFor(t *testing.T, what string, p *process, timeout time.Duration, check func() error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var err error
	for {
		if err = check(); err == nil {
			t.Logf("%s ready after %v", what, time.Since(start).Round(10*time.Millisecond))
			return
		}
		if p != nil {
			if exited, werr := p.Exited(); exited {
				t.Fatalf("%s: %s exited (%v) before it was ready (last check: %v); log tail:\n%s", what, p.Name, werr, err, p.Tail(40))
			}
		}
		if time.Now().After(deadline) {
			tail := ""
			if p != nil {
				tail = "\nlog tail:\n" + p.Tail(40)
			}
			t.Fatalf("%s not ready after %v: %v%s", what, timeout, err, tail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
