package minillm

import "encoding/json"

// Message is an OpenAI-style chat message. Content is a string, or a list of content parts.
type Message struct {
	Role       string          `json:"role"`
	Content    any             `json:"content"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  json.RawMessage `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

// UserMessage, SystemMessage: a message of that role with text content.
func UserMessage(text string) Message   { return Message{Role: "user", Content: text} }
func SystemMessage(text string) Message { return Message{Role: "system", Content: text} }

// Text is the content when it is text ("" otherwise).
func (m Message) Text() string {
	s, _ := m.Content.(string)
	return s
}

// ChatRequest is one chat completion request. Params (temperature, max_tokens, tools, ...)
// are sent as they are, beside model and messages.
type ChatRequest struct {
	Model    string
	Messages []Message
	Params   map[string]any
}

type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type ChatCompletion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []Choice `json:"choices"`
	Usage   *Usage   `json:"usage"`
	// Raw is the whole answer, for the fields not named here.
	Raw json.RawMessage `json:"-"`
}

type Choice struct {
	Index        int     `json:"index"`
	Message      Message `json:"message"`
	FinishReason *string `json:"finish_reason"`
}

// Text of the first choice.
func (c ChatCompletion) Text() string {
	if len(c.Choices) == 0 {
		return ""
	}
	return c.Choices[0].Message.Text()
}

type ChatCompletionChunk struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []ChunkChoice   `json:"choices"`
	Usage   *Usage          `json:"usage"`
	Raw     json.RawMessage `json:"-"`
}

type ChunkChoice struct {
	Index        int     `json:"index"`
	Delta        Delta   `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

type Delta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

// Text of the first choice's delta ("" when it has none).
func (c ChatCompletionChunk) Text() string {
	if len(c.Choices) == 0 || c.Choices[0].Delta.Content == nil {
		return ""
	}
	return *c.Choices[0].Delta.Content
}

type Model struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	OwnedBy string          `json:"owned_by"`
	Raw     json.RawMessage `json:"-"`
}
