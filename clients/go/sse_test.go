package minillm

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestSSEReader(t *testing.T) {
	raw := ": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata:[DONE]\r\rdata: last"
	want := []SSEEvent{
		{Event: "message", Data: `{"a":1}`},
		{Event: "x", Data: "line1\nline2"},
		{Event: "message", Data: "[DONE]"},
		{Event: "message", Data: "last"},
	}
	for _, reader := range []io.Reader{strings.NewReader(raw), iotest.OneByteReader(strings.NewReader(raw))} {
		events := NewSSEReader(reader)
		var got []SSEEvent
		for {
			event, err := events.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, event)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v", got)
		}
	}
}
