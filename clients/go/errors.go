package minillm

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// APIError is an error answer of the gateway, or an error event inside a stream.
type APIError struct {
	Status  int    // HTTP status (for an error event in a stream: the status its type stands for)
	Body    []byte // the raw body (or event data)
	Message string // error.message, else the body's text
	Type    string // error.type
	Code    string // error.code ("model_not_found", ...)
}

func (e *APIError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Message) }

func newAPIError(status int, body []byte) *APIError {
	e := &APIError{Status: status, Body: body}
	var decoded struct {
		Error struct {
			Message json.RawMessage `json:"message"`
			Type    json.RawMessage `json:"type"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &decoded) == nil {
		e.Message = jsonString(decoded.Error.Message)
		e.Type = jsonString(decoded.Error.Type)
		e.Code = jsonString(decoded.Error.Code)
	}
	if e.Message == "" {
		e.Message = string(body)
	}
	if e.Message == "" {
		e.Message = "HTTP " + http.StatusText(status)
	}
	return e
}

func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// ConnectionError: the gateway could not be reached, or the connection broke.
type ConnectionError struct {
	URL     string
	Timeout bool // it did not answer in time
	Err     error
}

func (e *ConnectionError) Error() string {
	if e.Timeout {
		return fmt.Sprintf("the gateway at %s did not answer in time: %v", e.URL, e.Err)
	}
	return fmt.Sprintf("cannot reach the gateway at %s: %v", e.URL, e.Err)
}

func (e *ConnectionError) Unwrap() error { return e.Err }

// StartError: the gateway could not be started.
type StartError struct {
	Message  string
	Output   []string // what the gateway printed while failing, at most the last 20 lines
	ExitCode int      // its exit status, -1 when it did not exit (or never ran)
	Config   bool     // its configuration is invalid (it exited with status 2)
	Err      error
}

func (e *StartError) Error() string { return e.Message }

func (e *StartError) Unwrap() error { return e.Err }

// VersionError: a gateway of another version than Options.ExpectVersion runs.
type VersionError struct {
	PID      int
	URL      string
	Running  string
	Expected string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("the running gateway (pid %d, %s) is version %s, %s was asked for; "+
		"restart it with `mini-llm restart`", e.PID, e.URL, e.Running, e.Expected)
}
