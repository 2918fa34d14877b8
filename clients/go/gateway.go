package minillm

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// VersionPolicy says what EnsureGateway does when the running gateway's version is not
// Options.ExpectVersion.
type VersionPolicy string

const (
	WarnOnMismatch    VersionPolicy = "warn"    // use it, with a warning (the default)
	FailOnMismatch    VersionPolicy = "error"   // return a *VersionError
	RestartOnMismatch VersionPolicy = "restart" // stop it and start the installed one
)

// AnyPort as Options.Port starts a gateway on any free port.
const AnyPort = -1

const (
	pollInterval       = 20 * time.Millisecond
	logRotateBytes     = 10 * 1024 * 1024
	stopMargin         = 5 * time.Second
	defaultStopGrace   = 35 * time.Second
	defaultStart       = 20 * time.Second
	defaultHealthCheck = 2 * time.Second
)

// Options of EnsureGateway. The zero value finds or starts the gateway as the Python SDK does.
type Options struct {
	// StateDir holds the state, lock and log files (default: DefaultStateDir).
	StateDir string
	// Python runs the gateway: this, else $MINI_LLM_PYTHON, else python3 or python on PATH.
	// It must have the mini-llm package installed.
	Python string
	// Host, Port, Workers and ConfigPath are given to a gateway this call starts; a running
	// gateway is used as it is. Port 0: the gateway's configuration decides (3333 by default);
	// AnyPort: any free port.
	Host       string
	Port       int
	Workers    int
	ConfigPath string
	// Env is added to the environment the gateway inherits: how provider keys reach it.
	Env map[string]string
	// StartTimeout bounds the wait for a started gateway (default 20 s); HealthTimeout one
	// GET /health (default 2 s).
	StartTimeout  time.Duration
	HealthTimeout time.Duration
	// ExpectVersion: the gateway version this program wants; empty, any version is used.
	ExpectVersion     string
	OnVersionMismatch VersionPolicy
	// Logf receives each thing done (started, stopped, restarted); they also go to the log file.
	Logf func(format string, args ...any)
}

// Health is the gateway's GET /health answer; Raw holds all of it.
type Health struct {
	Status            string         `json:"status"`
	PID               int            `json:"pid"`
	Version           string         `json:"version"`
	UptimeS           float64        `json:"uptime_s"`
	ShutdownGraceS    *float64       `json:"shutdown_grace_s"`
	ConfigFingerprint string         `json:"config_fingerprint"`
	Raw               map[string]any `json:"-"`
}

// Paths are the files of a state directory.
type Paths struct{ StateDir, StateFile, LockFile, LogFile string }

// GatewayPaths of these options.
func (o Options) GatewayPaths() Paths {
	dir := o.StateDir
	if dir == "" {
		dir = DefaultStateDir(o.getenv)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return Paths{dir, filepath.Join(dir, StateFile), filepath.Join(dir, LockFile), filepath.Join(dir, LogFile)}
}

func (o Options) getenv(name string) string {
	if v, ok := o.Env[name]; ok {
		return v
	}
	return os.Getenv(name)
}

// EnsureGateway returns the base URL of the shared gateway (http://127.0.0.1:3333), started
// if none runs. ctx bounds the whole call, waiting for the lock included.
func EnsureGateway(ctx context.Context, opts Options) (string, error) {
	state, _, err := EnsureGatewayState(ctx, opts)
	if err != nil {
		return "", err
	}
	return state.URL, nil
}

// EnsureGatewayState returns the running gateway's state and whether this call started it.
func EnsureGatewayState(ctx context.Context, opts Options) (*State, bool, error) {
	return ensure(ctx, opts, false)
}

func ensure(ctx context.Context, opts Options, keepPort bool) (*State, bool, error) {
	paths := opts.GatewayPaths()
	if state, health := FindGateway(ctx, opts); state != nil {
		if ok, err := versionOK(state, health, opts); err != nil || ok {
			return state, false, err
		}
	}
	lock, err := takeLock(ctx, paths)
	if err != nil {
		return nil, false, err
	}
	defer lock.release()
	if state, health := FindGateway(ctx, opts); state != nil {
		ok, err := versionOK(state, health, opts)
		if err != nil || ok {
			return state, false, err
		}
		event(paths, opts, "restarting gateway pid %d (version %s) as the installed version", state.PID, health.Version)
		stopLocked(ctx, paths, state, opts, 0)
	}
	var previous *State
	if keepPort {
		previous = ReadState(paths.StateFile)
	}
	state, err := startLocked(ctx, paths, opts, previous)
	if err != nil {
		return nil, false, err
	}
	return state, true, nil
}

// FindGateway returns the gateway the state file names and its health, if it is alive and
// GET /health answers with its pid (or one of its workers'); nil, nil when there is none.
func FindGateway(ctx context.Context, opts Options) (*State, *Health) {
	state := ReadState(opts.GatewayPaths().StateFile)
	if state == nil {
		return nil, nil
	}
	health := probe(ctx, state, opts.healthTimeout())
	if health == nil {
		return nil, nil
	}
	return state, health
}

// StopGateway stops the shared gateway (SIGTERM, then SIGKILL after grace; grace 0: its own
// drain time plus 5 s); the stopped state, or nil when none ran. A stale state file is
// removed; an unrelated process whose pid it names is never signalled.
func StopGateway(ctx context.Context, opts Options, grace time.Duration) (*State, error) {
	paths := opts.GatewayPaths()
	if ReadState(paths.StateFile) == nil {
		return nil, nil
	}
	lock, err := takeLock(ctx, paths)
	if err != nil {
		return nil, err
	}
	defer lock.release()
	state := ReadState(paths.StateFile)
	if state == nil || !stopLocked(ctx, paths, state, opts, grace) {
		return nil, nil
	}
	return state, nil
}

// Supervise checks the gateway every interval (default 30 s) until ctx is done or stop is
// called, restarting it (on the same port) when it is gone or unhealthy; failed restarts are
// retried after 1, 2, 4 ... s, at most maxBackoff (default 30 s). The checks run in a
// goroutine; stop ends them and returns once a check or restart under way has finished.
func Supervise(ctx context.Context, opts Options, interval, maxBackoff time.Duration) (stop func()) {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	paths := opts.GatewayPaths()
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	go func() {
		defer close(done)
		for wait(interval) {
			if state, _ := FindGateway(ctx, opts); state != nil || ctx.Err() != nil {
				continue
			}
			event(paths, opts, "gateway is gone or unhealthy; restarting it")
			for delay := time.Second; ctx.Err() == nil; delay = minDuration(delay*2, maxBackoff) {
				state, started, err := ensure(ctx, opts, true)
				if err == nil {
					if !started {
						event(paths, opts, "gateway pid %d is back (started elsewhere)", state.PID)
					}
					break
				}
				event(paths, opts, "restart failed: %v; retrying in %s", err, delay)
				if !wait(delay) {
					return
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

func minDuration(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

func (o Options) healthTimeout() time.Duration {
	if o.HealthTimeout > 0 {
		return o.HealthTimeout
	}
	return defaultHealthCheck
}

func (o Options) startTimeout() time.Duration {
	if o.StartTimeout > 0 {
		return o.StartTimeout
	}
	return defaultStart
}

// FetchHealth: GET {url}/health decoded, or nil when it does not answer 200 with a JSON
// object. No keep-alive: nothing is left open.
func FetchHealth(ctx context.Context, url string, timeout time.Duration) *Health {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+"/health", nil)
	if err != nil {
		return nil
	}
	req.Close = true
	resp, err := healthClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	var health Health
	if json.Unmarshal(body, &health) != nil || json.Unmarshal(body, &health.Raw) != nil {
		return nil
	}
	return &health
}

var healthClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

func probe(ctx context.Context, state *State, timeout time.Duration) *Health {
	if !pidAlive(state.PID) {
		return nil
	}
	health := FetchHealth(ctx, state.URL, timeout)
	if health == nil || !sameGateway(health.PID, state.PID) {
		return nil
	}
	return health
}

// sameGateway: whether /health's pid is the published gateway, or one of its workers
// (`serve --workers N` answers from forked children of the published pid).
func sameGateway(answering, published int) bool {
	return answering > 0 && (answering == published || parentPid(answering) == published)
}

var (
	warnedMu sync.Mutex
	warned   = map[int]bool{}
)

func versionOK(state *State, health *Health, opts Options) (bool, error) {
	if opts.ExpectVersion == "" || health.Version == opts.ExpectVersion {
		return true, nil
	}
	mismatch := &VersionError{PID: state.PID, URL: state.URL, Running: health.Version, Expected: opts.ExpectVersion}
	switch opts.OnVersionMismatch {
	case FailOnMismatch:
		return false, mismatch
	case RestartOnMismatch:
		return false, nil
	}
	warnedMu.Lock()
	first := !warned[state.PID]
	warned[state.PID] = true
	warnedMu.Unlock()
	if first {
		logf := opts.Logf
		if logf == nil {
			logf = log.Printf
		}
		logf("mini-llm: warning: the running gateway (pid %d, %s) is version %s, %s was asked for; using it (restart it to upgrade)",
			state.PID, state.URL, health.Version, opts.ExpectVersion)
	}
	return true, nil
}

func takeLock(ctx context.Context, paths Paths) (*fileLock, error) {
	lock, err := acquireLock(ctx, paths.LockFile)
	if err != nil {
		return nil, &StartError{Message: err.Error(), ExitCode: -1, Err: err}
	}
	return lock, nil
}
