package minillm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func python() string {
	if p := os.Getenv("MINI_LLM_PYTHON"); p != "" {
		return p
	}
	return "python3"
}

// testStateDir is a state directory of the test's own; the gateways whose command line names
// its state file are killed (by pid) when the test ends.
func testStateDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	t.Cleanup(func() { killGateways(t, dir) })
	return dir
}

func gatewayPids(dir string) []int {
	marker := []byte(filepath.Join(dir, StateFile))
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + entry.Name() + "/cmdline")
		if err != nil {
			continue
		}
		parts := bytes.Split(raw, []byte{0})
		named, serve := false, false
		for _, part := range parts {
			named = named || bytes.Equal(part, marker)
			serve = serve || string(part) == "serve"
		}
		if named && serve && pidAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killGateways(t *testing.T, dir string) {
	for _, pid := range gatewayPids(dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitFor(t, 10*time.Second, "a gateway to die", func() bool { return !pidAlive(pid) })
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func listeningLines(dir string) int {
	data, _ := os.ReadFile(filepath.Join(dir, LogFile))
	return strings.Count(string(data), " listening on ")
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func runPython(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(python(), args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", python(), args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
