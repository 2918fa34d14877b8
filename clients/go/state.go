package minillm

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The files of a state directory.
const (
	StateFile = "gateway.json"
	LockFile  = "gateway.lock"
	LogFile   = "gateway.log"
)

// State is what a running gateway publishes in gateway.json. The fields after StartedAt say
// how it was started (never a key: KeyEnv holds the names of the key variables only).
type State struct {
	PID               int            `json:"pid"`
	Host              string         `json:"host"`
	Port              int            `json:"port"`
	URL               string         `json:"url"`
	Version           string         `json:"version"`
	StartedAt         float64        `json:"started_at"`
	ConfigPath        string         `json:"config_path,omitempty"`
	Flags             map[string]any `json:"flags,omitempty"`
	KeyEnv            []string       `json:"key_env,omitempty"`
	ConfigFingerprint string         `json:"config_fingerprint,omitempty"`
}

// DefaultStateDir is $MINI_LLM_STATE_DIR, else $XDG_RUNTIME_DIR/mini-llm (if that directory
// exists), else $XDG_STATE_HOME/mini-llm, else ~/.local/state/mini-llm. getenv is os.Getenv
// when nil.
func DefaultStateDir(getenv func(string) string) string {
	if getenv == nil {
		getenv = os.Getenv
	}
	if dir := getenv("MINI_LLM_STATE_DIR"); dir != "" {
		return expandHome(dir)
	}
	if runtime := getenv("XDG_RUNTIME_DIR"); runtime != "" {
		if info, err := os.Stat(runtime); err == nil && info.IsDir() {
			return filepath.Join(runtime, "mini-llm")
		}
	}
	stateHome := getenv("XDG_STATE_HOME")
	if stateHome == "" {
		home, _ := os.UserHomeDir()
		stateHome = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(expandHome(stateHome), "mini-llm")
}

func expandHome(path string) string {
	if path == "~" || strings.HasPrefix(path, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, path[1:])
		}
	}
	return path
}

// ReadState reads a state file; nil when it is missing or not a complete record.
func ReadState(path string) *State {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return nil
	}
	for _, required := range []string{"pid", "host", "port", "url", "version", "started_at"} {
		if v, ok := raw[required]; !ok || string(v) == "null" {
			return nil
		}
	}
	var state State
	// optional fields written by newer gateways may be absent or null: ignore what does not fit
	var required struct {
		PID       int     `json:"pid"`
		Host      string  `json:"host"`
		Port      int     `json:"port"`
		URL       string  `json:"url"`
		Version   string  `json:"version"`
		StartedAt float64 `json:"started_at"`
	}
	if json.Unmarshal(data, &required) != nil {
		return nil
	}
	state.PID, state.Host, state.Port = required.PID, required.Host, required.Port
	state.URL, state.Version, state.StartedAt = required.URL, required.Version, required.StartedAt
	_ = json.Unmarshal(raw["config_path"], &state.ConfigPath)
	_ = json.Unmarshal(raw["flags"], &state.Flags)
	_ = json.Unmarshal(raw["key_env"], &state.KeyEnv)
	_ = json.Unmarshal(raw["config_fingerprint"], &state.ConfigFingerprint)
	return &state
}

func ensureDir(path string) error { return os.MkdirAll(path, 0o700) }

// pidAlive: whether pid is a live process (a zombie not yet reaped counts as dead).
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return err == syscall.EPERM // alive, but another user's
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no procfs: trust kill(0)
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return true
	}
	return stat[i+2] != 'Z' && stat[i+2] != 'X'
}

// parentPid of pid (Linux procfs); 0 when it cannot be read.
func parentPid(pid int) int {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	// after the parenthesised command name (which may hold spaces): state, ppid
	fields := strings.Fields(string(stat[i+2:]))
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// processCmdline of pid (Linux procfs); nil when it cannot be read.
func processCmdline(pid int) []string {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil
	}
	var parts []string
	for _, part := range bytes.Split(raw, []byte{0}) {
		if len(part) > 0 {
			parts = append(parts, string(part))
		}
	}
	return parts
}
