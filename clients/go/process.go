package minillm

// Starting and stopping gateway processes: the interpreter, the command and environment, the
// spawn in a session of its own, readiness, SIGTERM then SIGKILL, and the log.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FindPython returns the interpreter that runs the gateway: opts.Python, $MINI_LLM_PYTHON,
// else python3 or python on PATH.
func FindPython(opts Options) (string, error) {
	if opts.Python != "" {
		return opts.Python, nil
	}
	if p := opts.getenv("MINI_LLM_PYTHON"); p != "" {
		return p, nil
	}
	for _, name := range []string{"python3", "python"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", &StartError{
		Message: "no Python found to run the gateway: install mini-llm (`pip install mini-llm`) and " +
			"put python3 on PATH, or set MINI_LLM_PYTHON (or Options.Python)",
		ExitCode: -1,
	}
}

func command(paths Paths, opts Options, previous *State) []string {
	var flags map[string]any
	if previous != nil {
		flags = previous.Flags
	}
	args := []string{"-m", "mini_llm", "serve", "--state-file", paths.StateFile}
	host := opts.Host
	if host == "" {
		host, _ = flags["host"].(string)
	}
	if host != "" {
		args = append(args, "--host", host)
	}
	switch {
	case previous != nil && opts.Port <= 0:
		// a replacement keeps the port clients already know
		args = append(args, "--port", strconv.Itoa(previous.Port))
	case opts.Port == AnyPort:
		args = append(args, "--port", "0")
	case opts.Port > 0:
		args = append(args, "--port", strconv.Itoa(opts.Port))
	}
	workers := opts.Workers
	if workers == 0 {
		if w, ok := flags["workers"].(float64); ok {
			workers = int(w)
		}
	}
	if workers > 1 {
		args = append(args, "--workers", strconv.Itoa(workers))
	}
	return args
}

func childEnv(opts Options, previous *State) []string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if i := strings.IndexByte(kv, '='); i > 0 {
			env[kv[:i]] = kv[i+1:]
		}
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	switch {
	case opts.ConfigPath != "":
		env["MINI_LLM_CONFIG"] = absPath(opts.ConfigPath)
	case previous != nil:
		// the same configuration source as the gateway it replaces, even none
		if previous.ConfigPath != "" {
			env["MINI_LLM_CONFIG"] = previous.ConfigPath
		} else {
			delete(env, "MINI_LLM_CONFIG")
		}
	case env["MINI_LLM_CONFIG"] != "":
		env["MINI_LLM_CONFIG"] = absPath(env["MINI_LLM_CONFIG"])
	}
	list := make([]string, 0, len(env))
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	return list
}

func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

func startLocked(ctx context.Context, paths Paths, opts Options, previous *State) (*State, error) {
	python, err := FindPython(opts)
	if err != nil {
		return nil, err
	}
	if err := ensureDir(paths.StateDir); err != nil {
		return nil, &StartError{Message: err.Error(), ExitCode: -1, Err: err}
	}
	if old := ReadState(paths.StateFile); old != nil {
		// unreachable or not answering as itself: stop it only if it provably is our gateway
		// (its pid may have been reused by an unrelated process)
		if pidAlive(old.PID) && isOurGateway(old.PID, paths) {
			event(paths, opts, "stopping unresponsive gateway pid %d", old.PID)
			terminate(old.PID, defaultStopGrace)
		}
		removeStateIfPID(paths.StateFile, old.PID)
	}
	rotateLog(paths.LogFile)
	offset := fileSize(paths.LogFile)
	event(paths, opts, "starting the gateway")
	logFile, err := os.OpenFile(paths.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, &StartError{Message: err.Error(), ExitCode: -1, Err: err}
	}
	cmd := exec.Command(python, command(paths, opts, previous)...)
	cmd.Env = childEnv(opts, previous)
	cmd.Stdout, cmd.Stderr = logFile, logFile            // stdin: /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // a session of its own: it outlives us
	err = cmd.Start()
	logFile.Close()
	if err != nil {
		return nil, &StartError{Message: fmt.Sprintf("cannot start %s: %v", python, err), ExitCode: -1, Err: err}
	}
	pid := cmd.Process.Pid
	exited := make(chan int, 1)
	go func() { // reaps it whenever it exits, now or long after this call
		_ = cmd.Wait()
		exited <- cmd.ProcessState.ExitCode()
	}()
	deadline := time.Now().Add(opts.startTimeout())
	for {
		select {
		case code := <-exited:
			return nil, exitedError(code, logSince(paths.LogFile, offset), paths.LogFile)
		default:
		}
		if state := ReadState(paths.StateFile); state != nil && state.PID == pid {
			if health := FetchHealth(ctx, state.URL, opts.healthTimeout()); health != nil && sameGateway(health.PID, pid) {
				event(paths, opts, "started gateway pid %d at %s", pid, state.URL)
				return state, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			terminate(pid, 5*time.Second)
			why := fmt.Sprintf("did not become ready within %s", opts.startTimeout())
			if ctx.Err() != nil {
				why = "was given up: " + ctx.Err().Error()
			}
			return nil, &StartError{Message: fmt.Sprintf("the gateway %s (log: %s)", why, paths.LogFile), ExitCode: -1, Err: ctx.Err()}
		}
		time.Sleep(pollInterval)
	}
}

func exitedError(code int, output []string, logFile string) *StartError {
	lines := make([]string, len(output))
	for i, line := range output {
		lines[i] = strings.TrimPrefix(line, "mini-llm: ")
	}
	where := fmt.Sprintf("exit status %d; log: %s", code, logFile)
	var message string
	switch len(lines) {
	case 0:
		message = fmt.Sprintf("the gateway did not start and printed nothing (%s)", where)
	case 1:
		message = fmt.Sprintf("the gateway did not start: %s (%s)", lines[0], where)
	default:
		message = fmt.Sprintf("the gateway did not start (%s):\n%s", where, strings.Join(lines, "\n"))
	}
	// exit status 2 is the gateway's "invalid configuration"
	return &StartError{Message: message, Output: output, ExitCode: code, Config: code == 2}
}

func stopLocked(ctx context.Context, paths Paths, state *State, opts Options, grace time.Duration) bool {
	stopped := false
	health := probe(ctx, state, opts.healthTimeout())
	if pidAlive(state.PID) && (health != nil || isOurGateway(state.PID, paths)) {
		if grace <= 0 {
			grace = defaultStopGrace
			if health != nil && health.ShutdownGraceS != nil {
				grace = time.Duration(*health.ShutdownGraceS*float64(time.Second)) + stopMargin
			}
		}
		terminate(state.PID, grace)
		stopped = true
		event(paths, opts, "stopped gateway pid %d", state.PID)
	}
	removeStateIfPID(paths.StateFile, state.PID)
	return stopped
}

// isOurGateway: whether pid's command line proves it is a gateway of this state file.
func isOurGateway(pid int, paths Paths) bool {
	var serve, file, ours bool
	for _, part := range processCmdline(pid) {
		serve = serve || part == "serve"
		file = file || part == paths.StateFile
		ours = ours || strings.Contains(part, "mini_llm") || strings.Contains(part, "mini-llm")
	}
	return serve && file && ours
}

// terminate: SIGTERM, wait grace, then SIGKILL; whether it is gone.
func terminate(pid int, grace time.Duration) bool {
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGTERM, grace}, {syscall.SIGKILL, 5 * time.Second}} {
		if err := syscall.Kill(pid, step.sig); err != nil {
			return true
		}
		for deadline := time.Now().Add(step.wait); time.Now().Before(deadline); time.Sleep(pollInterval) {
			if !pidAlive(pid) {
				return true
			}
		}
	}
	return !pidAlive(pid)
}

func removeStateIfPID(path string, pid int) {
	if state := ReadState(path); state != nil && state.PID == pid {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return
		}
	}
}

func event(paths Paths, opts Options, format string, args ...any) {
	message := fmt.Sprintf(format, args...)
	if opts.Logf != nil {
		opts.Logf("%s", message)
	}
	if ensureDir(paths.StateDir) != nil {
		return
	}
	f, err := os.OpenFile(paths.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return // the log is a courtesy
	}
	defer f.Close()
	fmt.Fprintf(f, "--- %s go client pid %d: %s\n", time.Now().Format("2006-01-02 15:04:05"), os.Getpid(), message)
}

func rotateLog(path string) {
	if fileSize(path) > logRotateBytes {
		_ = os.Rename(path, path+".1")
	}
}

func fileSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.Size()
}

// logSince: what the gateway printed since offset (the clients' `--- ` lines left out), at
// most the last 20 lines.
func logSince(path string, offset int64) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	buf := make([]byte, 64*1024)
	n, _ := f.ReadAt(buf, offset)
	var lines []string
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		line = strings.TrimRight(line, " \r\t")
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "--- ") {
			lines = append(lines, line)
		}
	}
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return lines
}

func parentDir(path string) string { return filepath.Dir(path) }
