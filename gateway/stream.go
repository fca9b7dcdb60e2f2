package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/aoai-failover/failover"
)

// streamEvents passes a stream of server-sent events on, event by event as the client hands them over, flushing
// at the end of every event so that each reaches the caller as soon as it arrived. A stream cut upstream ends
// with an error event of its own, which OpenAI clients raise as an error, rather than with a silent end that some
// would take for a complete answer: for a stream of typed events (typed: a Responses API route; or any stream
// with "event:" lines) the Responses API's error event, else chat's error data. It reports whether the stream was
// cut, by the region or otherwise: the caller's leaving ends the upstream stream too (see passStream).
//
// It runs for a stream's whole life on a goroutine whose stack the stream keeps: the rare work (the cut event) is
// in functions of their own, so that its frame stays small (see takeOver).
func streamEvents(out eventWriter, body io.Reader, typed bool) (cut bool) {
	events := failover.NewEventReader(body)
	var sent eventTail
	seq := typedSequence{typed: typed}
	for {
		event, err := events.Next()
		if err != nil && err != io.EOF {
			event = event[:bytes.LastIndexByte(event, '\n')+1] // half a line is dropped
		}
		if !write(out, event) {
			return false // the caller is gone; closing the body ends the upstream stream
		}
		sent.add(event)
		seq.add(event)
		switch {
		case err == nil:
			if sent.atEventEnd() && !flush(out) {
				return false
			}
		case err == io.EOF:
			flush(out) // a last line without its newline went on as the region sent it
			return false
		default:
			writeCut(out, &sent, &seq, err)
			return true
		}
	}
}

// writeCut ends a stream cut by err with the cut event, typed or chat's.
func writeCut(out eventWriter, sent *eventTail, seq *typedSequence, err error) {
	// An event the region left open is closed, so that the cut event parses on its own.
	if !sent.atEventEnd() {
		write(out, []byte("\n"))
	}
	if seq.typed {
		write(out, seq.cutEvent(err))
	} else {
		event := failover.ErrorAnswer{Status: http.StatusBadGateway, Code: "stream_cut", Message: err.Error()}.Body()
		write(out, []byte("data: "+string(event)+"\n\n"))
	}
	flush(out)
}

// passStream is streamEvents for a request whose context is ctx, reporting whether the region cut the stream (for
// aoai_gateway_stream_cuts_total): a stream whose caller hung up, or whose request ran out of time, also ends
// with an error from upstream (the request's context ends the upstream stream), but the region did not cut it.
func passStream(ctx context.Context, out eventWriter, body io.Reader, typed bool) (upstreamCut bool) {
	return streamEvents(out, body, typed) && ctx.Err() == nil
}

// eventWriter is where a stream's events go: the ResponseWriter (answerWriter) or, for a stream the gateway took
// over from net/http, the connection (chunkWriter).
type eventWriter interface {
	io.Writer
	Flush() error
}

// answerWriter writes to a ResponseWriter. One that cannot flush (a middleware's, say) sends events later, which
// delays them but loses none.
type answerWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (a answerWriter) Flush() error {
	if err := a.rc.Flush(); !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func write(w io.Writer, data []byte) bool {
	if len(data) == 0 {
		return true
	}
	_, err := w.Write(data)
	return err == nil
}

// flush sends what was written.
func flush(out eventWriter) bool { return out.Flush() == nil }

// eventTail remembers the end of what was sent of an event stream: whether it ends an event (a blank line).
type eventTail struct {
	last    byte // the last byte sent other than '\r'
	started bool
	blank   bool // the last line sent was empty
}

func (t *eventTail) add(lines []byte) {
	for _, c := range lines {
		switch c {
		case '\r':
		case '\n':
			t.blank = !t.started || t.last == '\n'
			t.last, t.started = c, true
		default:
			t.last, t.started, t.blank = c, true, false
		}
	}
}

// atEventEnd reports whether nothing was sent yet or the last line sent was blank.
func (t *eventTail) atEventEnd() bool { return !t.started || t.blank }

// typedSequence follows a stream of typed events (the Responses API's), whose every event carries a
// sequence_number: the gateway's own error event, at a cut, continues the sequence, as the service's would.
type typedSequence struct {
	typed  bool   // the stream is typed: its route's are, or it carried an "event:" line
	next   int64  // one past the last sequence_number seen, or 0
	joined []byte // the data of an event of several data lines, joined; reused from event to event
}

// add notes what event, one event or a piece of one, says: whether it is typed, and its sequence_number. An
// event of one data line (every event the service sends) is read where it is, without a copy: add runs for every
// event of every stream.
func (s *typedSequence) add(event []byte) {
	var data []byte
	lines := 0
	for line := range bytes.Lines(event) {
		line = bytes.TrimRight(line, "\r\n")
		if bytes.HasPrefix(line, []byte("event:")) {
			s.typed = true
		}
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			lines++
			data = bytes.TrimPrefix(d, []byte(" "))
		}
	}
	if !s.typed || lines == 0 {
		return // chat's events are not parsed: they have no sequence to continue
	}
	if lines > 1 {
		data = s.join(event)
	}
	if n, ok := sequenceNumber(data); ok {
		s.next = n + 1
	}
}

// join is the data of event's data lines, joined by newlines, as an SSE reader sees it.
func (s *typedSequence) join(event []byte) []byte {
	data := s.joined[:0]
	first := true
	for line := range bytes.Lines(event) {
		line = bytes.TrimRight(line, "\r\n")
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if !first {
				data = append(data, '\n')
			}
			data, first = append(data, bytes.TrimPrefix(d, []byte(" "))...), false
		}
	}
	s.joined = data
	return data
}

// sequenceNumber reads an event's sequence_number without decoding the event, which would cost every delta of
// every stream a JSON parse. In JSON the member's quoted name cannot appear inside a string (its quotes would be
// escaped), so the first match is the member. ok is false when the event has none, or it is not a whole number.
func sequenceNumber(data []byte) (int64, bool) {
	const key = `"sequence_number"`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(data[i+len(key):], " \t\r\n")
	rest, ok := bytes.CutPrefix(rest, []byte(":"))
	if !ok {
		return 0, false
	}
	rest = bytes.TrimLeft(rest, " \t\r\n")
	end := 0
	for end < len(rest) && '0' <= rest[end] && rest[end] <= '9' {
		end++
	}
	if end == 0 || end == len(rest) || rest[end] != ',' && rest[end] != '}' && rest[end] != ' ' && rest[end] != '\n' { // a number cut short is not one
		return 0, false
	}
	n, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	return n, err == nil
}

// cutEvent is the Responses API's error event for a stream cut by err, which the openai SDKs raise as an error:
// the service sends one when it fails a stream, and a cut stream must not end as if it were complete.
func (s *typedSequence) cutEvent(err error) []byte {
	data, _ := json.Marshal(struct {
		Type           string  `json:"type"`
		Code           string  `json:"code"`
		Message        string  `json:"message"`
		Param          *string `json:"param"`
		SequenceNumber int64   `json:"sequence_number"`
	}{Type: "error", Code: "stream_cut", Message: err.Error(), SequenceNumber: s.next})
	return append(append([]byte("event: error\ndata: "), data...), "\n\n"...)
}
