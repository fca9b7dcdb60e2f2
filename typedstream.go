package failover

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The Responses API streams typed events: an "event:" line naming the event (response.created,
// response.output_text.delta, …, response.completed) and a "data:" line with its JSON, which names it again in
// "type". Unlike chat's stream there is no "data: [DONE]": the stream is complete at response.completed or
// response.incomplete. Its first output is any *.delta event (text, function-call arguments, a reasoning
// summary); an "error" or "response.failed" event before it is the region's failure, and the request moves on
// unseen, as for chat.

// openTypedStream reads a typed event stream until its first output (or its end, for a response that completed
// without a delta), and returns a body that replays what was read and passes the rest on. It fails when the stream
// ends, breaks, or fails first.
func openTypedStream(body io.ReadCloser, scrub func([]byte) ([]byte, bool)) (*streamBody, error) {
	s := &streamBody{events: NewEventReader(body), body: body, scrub: scrub, typed: true}
	var head []byte
	for len(head) <= maxStreamHead {
		line, err := s.readLine()
		kind, data := s.typedLine(line)
		switch kind {
		case lineName, lineBlank:
			head = append(head, line...)
		case lineData:
			head = append(head, line...)
			name := s.eventName(data)
			switch {
			case strings.HasSuffix(name, ".delta") || name == "response.completed" || name == "response.incomplete":
				s.seen(name, data)
				s.done = !strings.HasSuffix(name, ".delta") // it completed without output
				s.pending = head
				return s, nil
			case name == "error" || name == "response.failed":
				return nil, fmt.Errorf("stream began with %s: %s", name, s.describe(data))
			case name == "response.created" && backgroundEvent(data):
				// A background response runs on in its region whatever the stream does: failing over now would
				// start, and bill, a second one. It is the caller's from here, and its id is learned.
				s.seen(name, data)
				s.pending = head
				return s, nil
			case !json.Valid(data):
				return nil, errors.New("stream sent an event that is not JSON")
			}
			s.seen(name, data)
		}
		if err == io.EOF {
			return nil, errors.New("stream ended before any output: the connection closed")
		}
		if err != nil {
			return nil, fmt.Errorf("stream failed before any output: %w", err)
		}
	}
	return nil, fmt.Errorf("stream sent more than %d bytes without output", maxStreamHead)
}

// backgroundEvent reports whether a response.created event's response runs in the background.
func backgroundEvent(data []byte) bool {
	var event struct {
		Response struct {
			Background bool `json:"background"`
		} `json:"response"`
	}
	return json.Unmarshal(data, &event) == nil && event.Response.Background
}

// stepTyped is step for a typed event stream.
func (s *streamBody) stepTyped() {
	line, err := s.readLine()
	s.pending = line
	kind, data := s.typedLine(line)
	switch kind {
	case lineOther:
		s.pending = nil // a comment or stray text: see passedOn
	case lineData:
		if malformed(data) {
			s.pending, err = nil, errMalformedEvent
			break
		}
		switch name := s.eventName(data); name {
		case "response.completed", "response.incomplete":
			s.done = true
			s.seen(name, data)
		case "response.created":
			s.seen(name, data)
		case "error", "response.failed":
			// The stream is over. The event goes on, without any secret a misbehaving server might echo, for the
			// caller's SDK to raise.
			if scrubbed, changed := s.scrub(data); changed { // the JSON, so that escaped secrets are found too
				s.pending = slices.Concat([]byte("data: "), scrubbed, lineEnd(line))
			}
			err = fmt.Errorf("%w: the server sent %s: %s", ErrStreamCut, name, s.describe(data))
		}
	}
	s.finish(err, "response.completed")
}

// lineKind is what a line of a typed event stream is.
type lineKind uint8

const (
	lineOther lineKind = iota // a comment, an id or retry field, stray text: not passed on
	lineName                  // "event: …"
	lineData                  // "data: …"
	lineBlank                 // the end of an event
)

// typedLine tells what line is, keeping the name of the event it starts (cleared at the event's end), and
// returns a data line's data.
func (s *streamBody) typedLine(line []byte) (lineKind, []byte) {
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) == 0 {
		s.name = s.name[:0]
		return lineBlank, nil
	}
	if name, ok := bytes.CutPrefix(trimmed, []byte("event:")); ok {
		s.name = append(s.name[:0], bytes.TrimSpace(name)...)
		return lineName, nil
	}
	if data, ok := eventData(line); ok {
		return lineData, data
	}
	return lineOther, nil
}

// eventName is the type of the event whose data is data: its "event:" line's name, or else the data's "type".
func (s *streamBody) eventName(data []byte) string {
	if len(s.name) > 0 {
		return string(s.name)
	}
	var event struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(data, &event)
	return event.Type
}

// seen passes the response object of a response.created or .completed event to onResponse (or keeps it until
// onResponse is set), so that the Client learns where the response is stored.
func (s *streamBody) seen(name string, data []byte) {
	if name != "response.created" && name != "response.completed" && name != "response.incomplete" {
		return
	}
	var event struct {
		Response json.RawMessage `json:"response"`
	}
	if json.Unmarshal(data, &event) != nil || len(event.Response) == 0 {
		return
	}
	if s.onResponse != nil {
		s.onResponse(event.Response)
		return
	}
	s.responses = append(s.responses, bytes.Clone(event.Response))
}

// learnFrom sets onResponse, and calls it with what was seen before.
func (s *streamBody) learnFrom(onResponse func([]byte)) {
	s.onResponse = onResponse
	for _, r := range s.responses {
		onResponse(r)
	}
	s.responses = nil
}

// describe is the message of an error or response.failed event, without secrets, for an error.
func (s *streamBody) describe(data []byte) string {
	var event struct {
		Message  string `json:"message"`
		Code     any    `json:"code"`
		Response struct {
			Error struct {
				Message string `json:"message"`
				Code    any    `json:"code"`
			} `json:"error"`
		} `json:"response"`
	}
	_ = json.Unmarshal(data, &event)
	msg, code := event.Message, event.Code
	if msg == "" {
		msg, code = event.Response.Error.Message, event.Response.Error.Code
	}
	text := fmt.Sprintf("%v: %s", code, msg)
	if scrubbed, changed := s.scrub([]byte(text)); changed {
		return string(scrubbed)
	}
	return oneLine(text)
}
