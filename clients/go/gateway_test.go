package minillm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestEnsureStartsPublishesAndReuses(t *testing.T) {
	ctx := testContext(t)
	dir := testStateDir(t)
	opts := Options{StateDir: dir, Port: AnyPort}
	state, started, err := EnsureGatewayState(ctx, opts)
	if err != nil || !started {
		t.Fatalf("EnsureGatewayState: %v, started %v", err, started)
	}
	if state.URL != fmt.Sprintf("http://127.0.0.1:%d", state.Port) {
		t.Fatalf("url %q", state.URL)
	}
	var onDisk map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, StateFile))
	if err := json.Unmarshal(data, &onDisk); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range onDisk {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "config_fingerprint,config_path,flags,host,key_env,pid,port,started_at,url,version" {
		t.Fatalf("state file fields: %s", got)
	}
	for _, name := range []string{StateFile, LockFile, LogFile} {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s is not private: %v %v", name, info.Mode(), err)
		}
	}

	again, started, err := EnsureGatewayState(ctx, opts)
	if err != nil || started || again.PID != state.PID {
		t.Fatalf("second ensure: %+v %v %v", again, started, err)
	}
	// a Python caller finds the same gateway
	env := append(os.Environ(), "MINI_LLM_STATE_DIR="+dir)
	if got := runPython(t, env, "-c", "from mini_llm import ensure_gateway; print(ensure_gateway())"); got != state.URL {
		t.Fatalf("python found %q, not %q", got, state.URL)
	}
	if pids := gatewayPids(dir); len(pids) != 1 || pids[0] != state.PID {
		t.Fatalf("gateways %v", pids)
	}

	stopped, err := StopGateway(ctx, opts, 0)
	if err != nil || stopped == nil || stopped.PID != state.PID {
		t.Fatalf("StopGateway: %+v %v", stopped, err)
	}
	if pidAlive(state.PID) {
		t.Fatal("still alive")
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the state file is still there")
	}
	if stopped, err := StopGateway(ctx, opts, 0); stopped != nil || err != nil {
		t.Fatalf("second stop: %v %v", stopped, err)
	}
}

func TestStaleStateIsReplacedAndAnUnrelatedPidLeftAlone(t *testing.T) {
	ctx := testContext(t)
	dir := testStateDir(t)
	opts := Options{StateDir: dir, Port: AnyPort}
	// a state file naming a live, unrelated process, with a port nobody answers on
	unrelated := exec.Command("sleep", "60")
	if err := unrelated.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unrelated.Process.Kill(); _ = unrelated.Wait() }()
	listener, _ := net.Listen("tcp", "127.0.0.1:0")
	port := listener.Addr().(*net.TCPAddr).Port
	listener.Close()
	_ = ensureDir(dir)
	stale := fmt.Sprintf(`{"pid": %d, "host": "127.0.0.1", "port": %d, "url": "http://127.0.0.1:%d", "version": "0.1.0", "started_at": 0}`,
		unrelated.Process.Pid, port, port)
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	state, started, err := EnsureGatewayState(ctx, opts)
	if err != nil || !started || state.PID == unrelated.Process.Pid {
		t.Fatalf("%+v %v %v", state, started, err)
	}
	if !pidAlive(unrelated.Process.Pid) {
		t.Fatal("the unrelated process was signalled")
	}
}

func TestVersionPolicy(t *testing.T) {
	ctx := testContext(t)
	dir := testStateDir(t)
	opts := Options{StateDir: dir, Port: AnyPort}
	state, _, err := EnsureGatewayState(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	opts.ExpectVersion = "9.9.9"
	opts.Logf = func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }
	if url, err := EnsureGateway(ctx, opts); err != nil || url != state.URL {
		t.Fatalf("warn: %v %v", url, err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "is version 0.1.0, 9.9.9 was asked for") {
		t.Fatalf("warnings %q", warnings)
	}
	opts.OnVersionMismatch = FailOnMismatch
	var mismatch *VersionError
	if _, err := EnsureGateway(ctx, opts); !errors.As(err, &mismatch) || mismatch.Running != "0.1.0" {
		t.Fatalf("error policy: %v", err)
	}
	opts.OnVersionMismatch = RestartOnMismatch
	restarted, started, err := EnsureGatewayState(ctx, opts)
	if err != nil || !started || restarted.PID == state.PID || pidAlive(state.PID) {
		t.Fatalf("restart policy: %+v %v %v", restarted, started, err)
	}
}

func TestStartFailures(t *testing.T) {
	ctx := testContext(t)
	dir := testStateDir(t)
	config := filepath.Join(t.TempDir(), "mini-llm.toml")
	_ = os.WriteFile(config, []byte("port = 'not a port'\n"), 0o600)
	var startErr *StartError
	_, err := EnsureGateway(ctx, Options{StateDir: dir, Port: AnyPort, ConfigPath: config})
	if !errors.As(err, &startErr) || !startErr.Config || startErr.ExitCode != 2 || len(startErr.Output) == 0 {
		t.Fatalf("invalid configuration: %#v", err)
	}
	_, err = EnsureGateway(ctx, Options{StateDir: dir, Python: "/nonexistent/python3"})
	if !errors.As(err, &startErr) || !strings.Contains(err.Error(), "/nonexistent/python3") {
		t.Fatalf("no python: %v", err)
	}
	if pids := gatewayPids(dir); len(pids) != 0 {
		t.Fatalf("gateways %v", pids)
	}
}

func TestSuperviseRestartsAKilledGatewayOnTheSamePort(t *testing.T) {
	ctx := testContext(t)
	dir := testStateDir(t)
	opts := Options{StateDir: dir, Port: AnyPort}
	state, _, err := EnsureGatewayState(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := Supervise(ctx, opts, 100*time.Millisecond, time.Second)
	defer stop() // before the gateways are killed (Cleanup), or it would start another one
	_ = killPid(state.PID)
	var next *State
	waitFor(t, 30*time.Second, "a new gateway", func() bool {
		next, _ = FindGateway(ctx, opts)
		return next != nil && next.PID != state.PID
	})
	stop()
	if next.Port != state.Port {
		t.Fatalf("restarted on port %d, not %d", next.Port, state.Port)
	}
}

const pythonRacer = `
import os, sys, time
from mini_llm import ensure_gateway
go = sys.argv[1]
open(sys.argv[2], "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
print(ensure_gateway(port=0, timeout=60))
`

// TestRaceGoAndPython: 10 Go processes (this test binary, as racers) and 10 Python processes
// released at once start exactly one gateway.
func TestRaceGoAndPython(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 processes")
	}
	dir := testStateDir(t)
	tmp := t.TempDir()
	goFile := filepath.Join(tmp, "go")
	env := append(os.Environ(), "MINI_LLM_STATE_DIR="+dir)
	var cmds []*exec.Cmd
	for i := 0; i < 10; i++ {
		racer := exec.Command(os.Args[0], "-test.run=^TestRacerProcess$")
		racer.Env = append(append([]string(nil), env...), // a copy: not env's backing array
			"MINI_LLM_RACER_GO="+goFile, "MINI_LLM_RACER_READY="+filepath.Join(tmp, fmt.Sprint("go-", i)))
		cmds = append(cmds, racer, exec.Command(python(), "-c", pythonRacer, goFile, filepath.Join(tmp, fmt.Sprint("py-", i))))
		cmds[len(cmds)-1].Env = env
	}
	outputs := make([]string, len(cmds))
	var wg sync.WaitGroup
	errs := make(chan error, len(cmds))
	for i, cmd := range cmds {
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(i int, cmd *exec.Cmd, stderr *strings.Builder) {
			defer wg.Done()
			var b strings.Builder
			buf := make([]byte, 4096)
			for {
				n, err := out.Read(buf)
				b.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if err := cmd.Wait(); err != nil {
				errs <- fmt.Errorf("%v: %v\n%s", cmd.Args[:2], err, stderr.String())
			}
			outputs[i] = b.String()
		}(i, cmd, &stderr)
	}
	waitFor(t, 120*time.Second, "every racer to be ready", func() bool {
		entries, _ := os.ReadDir(tmp)
		return len(entries) == 20
	})
	_ = os.WriteFile(goFile, nil, 0o600)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	urls := map[string]bool{}
	for _, out := range outputs {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(line, "http://") {
				urls[line] = true
			}
		}
	}
	if len(urls) != 1 {
		t.Fatalf("URLs %v; outputs %q", urls, outputs)
	}
	if pids := gatewayPids(dir); len(pids) != 1 {
		t.Fatalf("gateways %v", pids)
	}
	if n := listeningLines(dir); n != 1 {
		t.Fatalf("%d gateways were started", n)
	}
}

// TestRacerProcess is one Go racer of TestRaceGoAndPython (it does nothing in a normal run).
func TestRacerProcess(t *testing.T) {
	goFile := os.Getenv("MINI_LLM_RACER_GO")
	if goFile == "" {
		t.Skip("only as a racer")
	}
	_ = os.WriteFile(os.Getenv("MINI_LLM_RACER_READY"), nil, 0o600)
	waitFor(t, 60*time.Second, "the go signal", func() bool {
		_, err := os.Stat(goFile)
		return err == nil
	})
	url, err := EnsureGateway(testContext(t), Options{Port: AnyPort, StartTimeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(url)
}

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
