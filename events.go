package failover

// What the lines and data of an event stream say: content, an error, a malformed event, a line the caller gets.
// The stream readers (stream.go, typedstream.go) decide with these; none of them keeps state.

import (
	"bytes"
	"encoding/json"
	"fmt"

	openai "github.com/sashabaranov/go-openai"
)

// hasContent reports whether an event's data carries part of the answer: text, a tool call, a refusal or a
// finish reason. Azure's first event (prompt_filter_results, no choices) and a role-only chunk do not. An error
// event is an error.
func hasContent(data []byte) (bool, error) {
	var chunk struct {
		Error   *openai.APIError `json:"error"`
		Choices []struct {
			Text  string `json:"text"` // completions
			Delta struct {
				Content      string          `json:"content"`
				Refusal      string          `json:"refusal"`
				ToolCalls    json.RawMessage `json:"tool_calls"`
				FunctionCall json.RawMessage `json:"function_call"`
			} `json:"delta"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &chunk); err != nil {
		return false, fmt.Errorf("stream sent an event that is not JSON: %w", err)
	}
	if chunk.Error != nil {
		return false, fmt.Errorf("stream began with an error event: %w", chunk.Error)
	}
	for _, c := range chunk.Choices {
		d := c.Delta
		if c.Text != "" || d.Content != "" || d.Refusal != "" || c.FinishReason != "" ||
			present(d.ToolCalls) || present(d.FunctionCall) {
			return true, nil
		}
	}
	return false, nil
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// isErrorEvent reports whether an event's data is an error, as OpenAI's clients read one: a JSON object whose
// "error" member (wherever it is, however its name is spelt or cased) holds something: not null, false, 0, "", {}
// or []. A content chunk is passed over with a scan of its quotes, unless it holds an escape, which could spell
// the member's name: then it is decoded (about 2.5 µs).
func isErrorEvent(data []byte) bool {
	_, ok := errorMember(data)
	return ok
}

// errorMember returns the "error" member of an error event (see isErrorEvent).
func errorMember(data []byte) (json.RawMessage, bool) {
	if !bytes.Contains(data, []byte(`\u`)) && !hasErrorMember(data) {
		return nil, false
	}
	var event struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(data, &event) != nil {
		return nil, false
	}
	switch string(bytes.TrimSpace(event.Error)) {
	case "", "null", "false", "0", `""`, "{}", "[]":
		return nil, false
	}
	return event.Error, true
}

// hasErrorMember reports whether data has a member named "error", in any case, as far as a scan without
// decoding can tell: the name between quotes, then a colon.
func hasErrorMember(data []byte) bool {
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '"')
		if j < 0 {
			return false
		}
		k := i + j // an opening quote, perhaps
		if k+7 <= len(data) && data[k+6] == '"' && bytes.EqualFold(data[k+1:k+6], []byte("error")) {
			if rest := bytes.TrimLeft(data[k+7:], " \t\r\n"); len(rest) > 0 && rest[0] == ':' {
				return true
			}
		}
		i = k + 1
	}
	return false
}

// errMalformedEvent ends a stream whose region sent data that is not JSON: a client would fail on it, or, worse,
// skip it and take the answer, a piece short, for whole.
var errMalformedEvent = fmt.Errorf("%w: the server sent an event whose data is not JSON", ErrStreamCut)

// malformed reports whether an event's data (a data line's: OpenAI-compatible servers send each event's JSON on
// one line) is something other than JSON or the [DONE] marker.
func malformed(data []byte) bool {
	return len(data) > 0 && string(data) != "[DONE]" && !json.Valid(data)
}

// passedOn reports whether a line of an event stream goes on to the caller: data lines and the blank lines that
// end events. Comments, other fields and stray text do not: clients of chat completions ignore them, and
// go-openai would gather them into the stream's error, where a key a server echoed, even split over lines, would
// show.
func passedOn(line []byte) bool {
	_, isData := eventData(line)
	return isData || len(bytes.TrimSpace(line)) == 0
}

// lineEnd is line's ending: "\n", "\r\n", or nothing at the end of a stream.
func lineEnd(line []byte) []byte {
	text := bytes.TrimRight(line, "\r\n")
	return line[len(text):]
}

// eventData returns the data of a "data:" line, trimmed.
func eventData(line []byte) ([]byte, bool) {
	line = bytes.TrimSpace(line)
	data, ok := bytes.CutPrefix(line, []byte("data:"))
	return bytes.TrimSpace(data), ok
}

// progress reports whether a line of a stream carries an event's field the caller gets: data, or a typed event's
// name.
func progress(line []byte) bool {
	line = bytes.TrimSpace(line)
	return bytes.HasPrefix(line, []byte("data:")) || bytes.HasPrefix(line, []byte("event:"))
}
