package minillm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

// DefaultURL is where a gateway listens unless configured otherwise.
const DefaultURL = "http://127.0.0.1:3333"

// error types of an error event inside a stream (which has no HTTP status of its own)
var streamErrorStatus = map[string]int{
	"invalid_request_error": 400,
	"authentication_error":  401,
	"permission_error":      403,
	"not_found_error":       404,
	"rate_limit_error":      429,
	"timeout_error":         504,
}

// Client talks to a mini-llm gateway. Its fields may be set before first use.
type Client struct {
	BaseURL    string      // http://host:port, without /v1
	APIKey     string      // sent as Authorization: Bearer, when the gateway asks for client keys
	Header     http.Header // added to every request
	HTTPClient *http.Client
}

// NewClient returns a client of the gateway at baseURL (a trailing "/v1" is ignored). An empty
// baseURL: $MINI_LLM_BASE_URL, else the published shared gateway's URL (not checked), else
// DefaultURL.
func NewClient(baseURL string) *Client {
	if baseURL == "" {
		baseURL = os.Getenv("MINI_LLM_BASE_URL")
	}
	if baseURL == "" {
		if state := ReadState(Options{}.GatewayPaths().StateFile); state != nil {
			baseURL = state.URL
		} else {
			baseURL = DefaultURL
		}
	}
	return &Client{BaseURL: NormalizeBaseURL(baseURL), HTTPClient: &http.Client{}}
}

// Auto returns a client of the shared gateway, found or started by EnsureGateway.
func Auto(ctx context.Context, opts Options) (*Client, error) {
	url, err := EnsureGateway(ctx, opts)
	if err != nil {
		return nil, err
	}
	return NewClient(url), nil
}

// NormalizeBaseURL: http://host:port[/prefix] without a trailing slash or /v1.
func NormalizeBaseURL(url string) string {
	url = strings.TrimRight(url, "/")
	return strings.TrimSuffix(url, "/v1")
}

// Chat sends one chat completion request.
func (c *Client) Chat(ctx context.Context, req ChatRequest) (*ChatCompletion, error) {
	body, err := chatBody(req, false)
	if err != nil {
		return nil, err
	}
	data, err := c.call(ctx, http.MethodPost, "/v1/chat/completions", body)
	if err != nil {
		return nil, err
	}
	var reply ChatCompletion
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, fmt.Errorf("unexpected answer from the gateway: %w", err)
	}
	reply.Raw = data
	return &reply, nil
}

// Models lists the models the gateway offers.
func (c *Client) Models(ctx context.Context) ([]Model, error) {
	data, err := c.call(ctx, http.MethodGet, "/v1/models", nil)
	if err != nil {
		return nil, err
	}
	var list struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("unexpected answer from the gateway: %w", err)
	}
	models := make([]Model, len(list.Data))
	for i, raw := range list.Data {
		if err := json.Unmarshal(raw, &models[i]); err != nil {
			return nil, fmt.Errorf("unexpected answer from the gateway: %w", err)
		}
		models[i].Raw = raw
	}
	return models, nil
}

// Health is the gateway's GET /health.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	data, err := c.call(ctx, http.MethodGet, "/health", nil)
	if err != nil {
		return nil, err
	}
	var health Health
	if err := json.Unmarshal(data, &health); err != nil {
		return nil, fmt.Errorf("unexpected answer from the gateway: %w", err)
	}
	_ = json.Unmarshal(data, &health.Raw)
	return &health, nil
}

// Stream sends a streamed chat completion request. An error answer is returned at once; then
// iterate:
//
//	for stream.Next() { fmt.Print(stream.Chunk().Text()) }
//	if err := stream.Err(); err != nil { ... }
//
// Cancelling ctx, or Close, closes the connection. The gateway is asked for usage
// (stream_options.include_usage) unless Params say otherwise.
func (c *Client) Stream(ctx context.Context, req ChatRequest) (*ChatStream, error) {
	body, err := chatBody(req, true)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, http.MethodPost, "/v1/chat/completions", body)
	if err != nil {
		return nil, err
	}
	return &ChatStream{ctx: ctx, body: resp.Body, events: NewSSEReader(resp.Body), url: c.BaseURL}, nil
}

// ChatStream iterates over a stream's chunks.
type ChatStream struct {
	ctx    context.Context
	body   io.ReadCloser
	events *SSEReader
	url    string
	chunk  ChatCompletionChunk
	usage  *Usage
	err    error
	done   bool
}

// Next advances to the next chunk; false at the end of the stream or on an error (Err).
func (s *ChatStream) Next() bool {
	for !s.done {
		event, err := s.events.Next()
		if err != nil {
			s.done = true
			if err != io.EOF {
				s.err = s.readError(err)
			}
			break
		}
		if event.Data == "" {
			continue
		}
		if event.Data == "[DONE]" {
			s.done = true
			break
		}
		chunk, err := decodeChunk([]byte(event.Data))
		if err != nil {
			s.done, s.err = true, err
			break
		}
		if chunk.Usage != nil {
			s.usage = chunk.Usage
		}
		s.chunk = chunk
		return true
	}
	s.Close()
	return false
}

func (s *ChatStream) readError(err error) error {
	if ctxErr := s.ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return &ConnectionError{URL: s.url, Err: fmt.Errorf("the stream broke: %w", err)}
}

// Chunk is the chunk Next advanced to.
func (s *ChatStream) Chunk() ChatCompletionChunk { return s.chunk }

// Usage, once the usage chunk has come (nil before, or when not asked for).
func (s *ChatStream) Usage() *Usage { return s.usage }

// Err is what ended the stream early: an *APIError (an error event), a *ConnectionError, or
// the context's error; nil when it ended normally.
func (s *ChatStream) Err() error { return s.err }

// Close closes the connection (Next does at the end of the stream).
func (s *ChatStream) Close() error {
	s.done = true
	return s.body.Close()
}

// Text reads the rest of the stream and joins its text.
func (s *ChatStream) Text() (string, error) {
	var b strings.Builder
	for s.Next() {
		b.WriteString(s.chunk.Text())
	}
	return b.String(), s.err
}

func decodeChunk(data []byte) (ChatCompletionChunk, error) {
	var probe struct {
		Error   json.RawMessage `json:"error"`
		Choices json.RawMessage `json:"choices"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return ChatCompletionChunk{}, fmt.Errorf("unexpected event from the gateway: %w", err)
	}
	if probe.Error != nil && probe.Choices == nil {
		var kind struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(probe.Error, &kind)
		status, ok := streamErrorStatus[kind.Type]
		if !ok {
			status = http.StatusBadGateway
		}
		return ChatCompletionChunk{}, newAPIError(status, data)
	}
	var chunk ChatCompletionChunk
	if err := json.Unmarshal(data, &chunk); err != nil || probe.Choices == nil {
		return ChatCompletionChunk{}, fmt.Errorf("unexpected event from the gateway: %s", data)
	}
	chunk.Raw = append(json.RawMessage(nil), data...)
	return chunk, nil
}

func chatBody(req ChatRequest, stream bool) ([]byte, error) {
	if req.Model == "" {
		return nil, errors.New(`minillm: ChatRequest.Model is empty (a model name such as "mock/echo")`)
	}
	if req.Messages == nil {
		return nil, errors.New("minillm: ChatRequest.Messages is empty")
	}
	body := make(map[string]any, len(req.Params)+4)
	for k, v := range req.Params {
		body[k] = v
	}
	body["model"] = req.Model
	body["messages"] = req.Messages
	body["stream"] = stream
	if _, given := req.Params["stream_options"]; stream && !given {
		body["stream_options"] = map[string]any{"include_usage": true}
	}
	return json.Marshal(body)
}

func (c *Client) call(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &ConnectionError{URL: c.BaseURL, Err: err}
	}
	return data, nil
}

// send: the response when its status is below 400, else the *APIError.
func (c *Client) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, NormalizeBaseURL(c.BaseURL)+path, reader)
	if err != nil {
		return nil, err
	}
	for name, values := range c.Header {
		req.Header[name] = values
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "mini-llm-go/0.1.0")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	httpClient := c.HTTPClient
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var netErr net.Error
		return nil, &ConnectionError{URL: c.BaseURL, Timeout: errors.As(err, &netErr) && netErr.Timeout(), Err: err}
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return nil, newAPIError(resp.StatusCode, data)
	}
	return resp, nil
}
