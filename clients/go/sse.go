package minillm

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// SSEEvent is one server-sent event.
type SSEEvent struct {
	Event string // "message" unless the stream named it
	Data  string // its data lines, joined by "\n"
	ID    string
}

// SSEReader reads server-sent events from a stream, in one place: lines end with "\n",
// "\r\n" or "\r"; a blank line ends an event; comments are skipped.
type SSEReader struct {
	r       *bufio.Reader
	data    []string
	event   string
	id      string
	pending bool // the previous line ended with "\r": a "\n" next belongs to it
}

func NewSSEReader(r io.Reader) *SSEReader { return &SSEReader{r: bufio.NewReaderSize(r, 16*1024)} }

// Next returns the next event; io.EOF at the end (an event not ended by a blank line is still
// delivered first).
func (s *SSEReader) Next() (SSEEvent, error) {
	for {
		line, err := s.line()
		if err != nil {
			if err == io.EOF && len(s.data) > 0 {
				return s.dispatch(), nil
			}
			return SSEEvent{}, err
		}
		if line == "" {
			if len(s.data) > 0 {
				return s.dispatch(), nil
			}
			s.event = ""
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value := line, ""
		if i := strings.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], strings.TrimPrefix(line[i+1:], " ")
		}
		switch field {
		case "data":
			s.data = append(s.data, value)
		case "event":
			s.event = value
		case "id":
			if !strings.ContainsRune(value, 0) {
				s.id = value
			}
		}
	}
}

func (s *SSEReader) dispatch() SSEEvent {
	event := SSEEvent{Event: s.event, Data: strings.Join(s.data, "\n"), ID: s.id}
	if event.Event == "" {
		event.Event = "message"
	}
	s.data, s.event = nil, ""
	return event
}

// line reads one line without its ending; a last line without one is returned before io.EOF.
func (s *SSEReader) line() (string, error) {
	var buf bytes.Buffer
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			if err == io.EOF && buf.Len() > 0 {
				return buf.String(), nil
			}
			return "", err
		}
		if s.pending {
			s.pending = false
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\n':
			return buf.String(), nil
		case '\r':
			s.pending = true
			return buf.String(), nil
		}
		buf.WriteByte(b)
	}
}
