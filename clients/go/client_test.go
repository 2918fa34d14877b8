package minillm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// One gateway for the client tests, started on first use and killed when they all end.
var shared struct {
	once sync.Once
	dir  string
	url  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		for _, pid := range gatewayPids(shared.dir) {
			_ = killPid(pid)
		}
		_ = os.RemoveAll(filepath.Dir(shared.dir))
	}
	os.Exit(code)
}

func sharedClient(t *testing.T) *Client {
	t.Helper()
	shared.once.Do(func() {
		tmp, err := os.MkdirTemp("", "mini-llm-go-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = filepath.Join(tmp, "state")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		shared.url, shared.err = EnsureGateway(ctx, Options{StateDir: shared.dir, Port: AnyPort})
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return NewClient(shared.url + "/v1/")
}

func TestChat(t *testing.T) {
	client := sharedClient(t)
	reply, err := client.Chat(testContext(t), ChatRequest{
		Model:    "mock/echo",
		Messages: []Message{SystemMessage("be brief"), UserMessage("Hello")},
		Params:   map[string]any{"temperature": 0.2},
	})
	if err != nil {
		t.Fatal(err)
	}
	if reply.Text() != "Hello" || reply.Object != "chat.completion" || reply.Usage == nil || reply.Usage.TotalTokens == 0 {
		t.Fatalf("%+v", reply)
	}
	if !strings.Contains(string(reply.Raw), `"refusal"`) {
		t.Fatalf("Raw does not hold the whole answer: %s", reply.Raw)
	}
}

func TestStream(t *testing.T) {
	client := sharedClient(t)
	text := "Stream me, please, in several pieces"
	stream, err := client.Stream(testContext(t), ChatRequest{Model: "mock/echo", Messages: []Message{UserMessage(text)}})
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	n := 0
	for stream.Next() {
		n++
		if stream.Chunk().Object != "chat.completion.chunk" {
			t.Fatalf("chunk %+v", stream.Chunk())
		}
		got.WriteString(stream.Chunk().Text())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got.String() != text || n < 4 {
		t.Fatalf("%d chunks: %q", n, got.String())
	}
	if stream.Usage() == nil || stream.Usage().CompletionTokens == 0 {
		t.Fatalf("usage %+v", stream.Usage())
	}
}

func TestCancellingTheContextClosesTheStream(t *testing.T) {
	client := sharedClient(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	words := "one two three four five six seven eight nine ten eleven twelve"
	stream, err := client.Stream(ctx, ChatRequest{Model: "mock/slow", Messages: []Message{UserMessage(words)}})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	seen := 0
	for stream.Next() {
		if stream.Chunk().Text() != "" {
			seen++
			if seen == 2 {
				cancel()
			}
		}
	}
	if !errors.Is(stream.Err(), context.Canceled) {
		t.Fatalf("err %v", stream.Err())
	}
	if elapsed := time.Since(started); elapsed > 900*time.Millisecond {
		t.Fatalf("the stream went on for %s after cancel", elapsed)
	}
	if _, err := client.Health(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

func TestModelsAndHealth(t *testing.T) {
	client := sharedClient(t)
	models, err := client.Models(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range models {
		found = found || m.ID == "mock/echo"
	}
	if !found {
		t.Fatalf("models %+v", models)
	}
	health, err := client.Health(testContext(t))
	if err != nil || health.Status != "ok" || health.PID == 0 || health.Raw["providers"] == nil {
		t.Fatalf("%+v %v", health, err)
	}
}

func TestErrors(t *testing.T) {
	client := sharedClient(t)
	ctx := testContext(t)
	cases := []struct {
		model  string
		status int
		code   string
	}{
		{"mock/error-429", 429, "mock_429"},
		{"nope/nothing", 404, "model_not_found"},
		{"mock/error-503", 502, ""}, // an upstream 5xx is the gateway's 502
	}
	for _, c := range cases {
		_, err := client.Chat(ctx, ChatRequest{Model: c.model, Messages: []Message{UserMessage("x")}})
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != c.status || (c.code != "" && apiErr.Code != c.code) || len(apiErr.Body) == 0 {
			t.Errorf("%s: %#v", c.model, err)
		}
		// a stream refused before it begins: the same error, at once
		_, err = client.Stream(ctx, ChatRequest{Model: c.model, Messages: []Message{UserMessage("x")}})
		if !errors.As(err, &apiErr) || apiErr.Status != c.status {
			t.Errorf("stream %s: %#v", c.model, err)
		}
	}
	_, err := client.Chat(ctx, ChatRequest{Model: "mock/echo", Messages: []Message{UserMessage("x")}, Params: map[string]any{"temperature": "hot"}})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Errorf("bad request: %v", err)
	}
	if _, err := client.Chat(ctx, ChatRequest{Messages: []Message{UserMessage("x")}}); err == nil {
		t.Error("no model: no error")
	}
}

func TestAnErrorEventInsideAStream(t *testing.T) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}`+"\n\n")
		fmt.Fprint(w, `data: {"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limited"}}`+"\n\n")
	}))
	defer server.Close()
	stream, err := NewClient(server.URL).Stream(testContext(t), ChatRequest{Model: "m", Messages: []Message{UserMessage("x")}})
	if err != nil {
		t.Fatal(err)
	}
	text, err := stream.Text()
	var apiErr *APIError
	if text != "Hi" || !errors.As(err, &apiErr) || apiErr.Status != 429 || apiErr.Code != "rate_limited" || apiErr.Message != "slow down" {
		t.Fatalf("%q %#v", text, err)
	}
}

func TestUnreachable(t *testing.T) {
	listener, _ := net.Listen("tcp", "127.0.0.1:0")
	port := listener.Addr().(*net.TCPAddr).Port
	listener.Close()
	_, err := NewClient(fmt.Sprintf("http://127.0.0.1:%d", port)).Health(testContext(t))
	var connErr *ConnectionError
	if !errors.As(err, &connErr) || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("%#v", err)
	}
}
