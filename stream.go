package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// ErrStreamCut is matched by the error of a stream that ended before its end, after its first content had reached
// the caller: the connection closed without the final "data: [DONE]", the server sent an error event, or the
// caller's context ended. Before the first content, a failing stream moves to the next region unseen instead.
var ErrStreamCut = errors.New("failover: stream cut")

// ErrStreamStalled is matched by the cause of a stream cut because its region sent nothing for longer than the
// stream idle timeout (WithStreamIdleTimeout) after its first content: the region rests, and the stream ends with
// an error matching ErrStreamCut instead of holding the caller.
var ErrStreamStalled = errors.New("failover: stream stalled")

// maxStreamHead bounds what is held back before a stream's first content (Azure's content filter results,
// role-only chunks).
const maxStreamHead = 1 << 20

// streamBody passes a server-sent event stream on, line by line as Read, or event by event through an
// EventReader, after openStream has read it up to its first content. It turns a stream that ends without
// "data: [DONE]" into an ErrStreamCut error, so that a cut stream never looks like a complete one. Read and Close
// may be called concurrently.
type streamBody struct {
	events  *EventReader // reads the upstream stream, a line at a time
	out     []byte       // the event nextEvent returns
	body    io.Closer
	cancel  func() // ends the attempt's context; set once the stream is handed over
	onCut   func() // called once if the stream breaks off; set once the stream is handed over
	closed  atomic.Bool
	pending []byte                      // read but not yet passed on
	done    bool                        // "data: [DONE]" was seen
	err     error                       // returned once pending is empty
	scrub   func([]byte) ([]byte, bool) // removes secrets from an error event

	idle    *time.Timer   // ends the stream when upstream is silent for idleFor (see watch); nil: no limit
	idleFor time.Duration //
	armed   bool          // the idle timer runs: waiting for an event\'s line
	stalled atomic.Bool   // the idle timer fired

	end     chatEnd                    // what a chat stream said of its end (complete.go)
	expects func() (n int, usage bool) // what its request asked of that end; nil: only [DONE] completes it

	typed      bool         // the Responses API's typed events (typedstream.go), not chat's data-only chunks
	name       []byte       // the name of the typed event being read, from its "event:" line
	onResponse func([]byte) // called with the response object of response.created and .completed events
	responses  [][]byte     // those seen before onResponse was set
}

// openStream reads an event stream until it carries content, and returns a body that replays what was read and
// passes the rest on. It fails when the stream ends, breaks, sends an error event or garbled data first: the
// stream was this backend's failure and nothing has reached the caller yet. scrub removes secrets from an event
// that becomes an error.
func openStream(body io.ReadCloser, scrub func([]byte) ([]byte, bool)) (*streamBody, error) {
	s := &streamBody{events: NewEventReader(body), body: body, scrub: scrub}
	var head []byte
	for len(head) <= maxStreamHead {
		line, err := s.readLine()
		if len(line) > 0 && passedOn(line) {
			head = append(head, line...)
			data, ok := eventData(line)
			if ok && string(data) == "[DONE]" {
				return nil, errors.New("stream ended before any content")
			}
			if ok {
				content, err := hasContent(data)
				if err != nil {
					if scrubbed, changed := scrub(data); changed {
						// The same error, from the event without its secrets; if taking them out left no
						// error to read, none of the event is shown.
						if _, err = hasContent(scrubbed); err == nil {
							err = errors.New("stream began with an error event (not shown: it held a secret)")
						}
					}
					return nil, err
				}
				if content {
					s.end.see(data) // it may finish its choice too
					s.pending = head
					return s, nil
				}
			}
		}
		if err == io.EOF {
			return nil, errors.New("stream ended before any content: the connection closed")
		}
		if err != nil {
			return nil, fmt.Errorf("stream failed before any content: %w", err)
		}
	}
	return nil, fmt.Errorf("stream sent more than %d bytes without content", maxStreamHead)
}

// readLine reads the next line of the upstream stream as it comes, up to maxEventLine bytes: a line goes on to
// the caller without waiting for the rest of its event. The line is valid until the next call. Once watch has
// set an idle limit, the wait for a line (not the caller's time between reads) is bounded by it.
func (s *streamBody) readLine() ([]byte, error) {
	if s.idle == nil {
		return s.events.readLine()
	}
	if !s.armed {
		s.idle.Reset(s.idleFor)
		s.armed = true
	}
	line, err := s.events.readLine()
	if progress(line) || err != nil { // a comment or a keep-alive is not: the wait for the next event goes on
		s.idle.Stop()
		s.armed = false
	}
	if err != nil && s.stalled.Load() {
		err = fmt.Errorf("%w: no event for %s", ErrStreamStalled, s.idleFor)
	}
	return line, err
}

// watch bounds each wait for the upstream stream's next line by d from now on, calling stop (which ends the
// attempt's context, and so the read) when one runs out. d of 0 sets no limit.
func (s *streamBody) watch(d time.Duration, stop func()) {
	if d <= 0 {
		return
	}
	s.idleFor = d
	s.idle = time.AfterFunc(d, func() {
		s.stalled.Store(true)
		stop()
		s.body.Close() // a transport whose body does not watch the context is ended too
	})
	s.idle.Stop() // armed by each read
}

func (s *streamBody) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		s.step()
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// nextEvent returns what goes on to the caller of the stream's next event: its lines through the blank line
// that ends it (see EventReader.Next), in pieces of whole lines past maxEventPiece, or what there is of it when
// the stream ends, with the error. The events openStream held back before the first content come one by one.
func (s *streamBody) nextEvent() ([]byte, error) {
	out := s.out[:0]
	for {
		for len(s.pending) > 0 {
			line := s.pending
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				line = line[:i+1]
			}
			s.pending = s.pending[len(line):]
			out = append(out, line...)
			if len(bytes.TrimSpace(line)) == 0 || len(out) >= maxEventPiece {
				s.out = out
				return out, nil
			}
		}
		if s.err != nil {
			s.out = out
			return out, s.err
		}
		s.step()
	}
}

// step reads one line of the upstream stream into pending, as it goes on to the caller, and sets err when the
// stream is over.
func (s *streamBody) step() {
	if s.typed {
		s.stepTyped()
		return
	}
	line, err := s.readLine()
	s.pending = line
	data, isData := eventData(line)
	errValue, isError := errorMember(data)
	if s.expects != nil {
		s.end.line(line)
		if isData {
			s.end.see(data)
		}
	}
	switch {
	case isData && string(data) == "[DONE]":
		s.done = true
	case isData && isError:
		err = s.errorEvent(line, errValue)
	case isData && malformed(data) && !s.done: // after [DONE] the answer is whole, whatever follows
		err = errMalformedEvent
		s.pending = nil // no client could read it: the stream ends here, cut, and nothing of it is passed on
	case isData && partialData(data):
		s.scrubPartial(line, data)
	case !passedOn(line):
		s.pending = nil // a comment, another field or stray text: see passedOn
	}
	if err == io.EOF && !s.done && s.expects != nil && s.end.complete(s.expects()) {
		s.done = true // every choice finished, and the body ended on an event's end: whole without [DONE]
	}
	s.finish(err, "data: [DONE]")
}

// errorEvent ends the stream at an error event: stop here rather than wait for a server that may hold the
// connection. The event goes on to the caller with its error alone, first, where go-openai reads it as one, and
// without the secrets a misbehaving server might echo. (step's rare cases are methods of their own, so that the
// frame of step, on the stack at every line of every stream, stays small.)
func (s *streamBody) errorEvent(line, errValue []byte) error {
	event := slices.Concat([]byte(`{"error":`), errValue, []byte("}"))
	if scrubbed, changed := s.scrub(event); changed {
		event = scrubbed
	}
	s.pending = slices.Concat([]byte("data: "), event, lineEnd(line))
	return fmt.Errorf("%w: the server sent an error event", ErrStreamCut)
}

// scrubPartial scrubs data that is JSON but not a chunk's object (a string, a number): perhaps a line of an
// event whose data spans several lines, which no check in step reads as an error. It is scrubbed as it stands:
// the JSON value, so that escaped secrets are found too.
func (s *streamBody) scrubPartial(line, data []byte) {
	if scrubbed, changed := s.scrub(data); changed {
		s.pending = slices.Concat([]byte("data: "), scrubbed, lineEnd(line))
	}
}

// finish sets the stream's error from the upstream's err, if any: a stream that ends before its end marker (what
// its kind of stream ends with) is cut.
func (s *streamBody) finish(err error, marker string) {
	switch {
	case err == io.EOF && s.done:
		s.err = io.EOF
	case err == io.EOF:
		s.err = fmt.Errorf("%w: the connection ended without %s", ErrStreamCut, marker)
	case err != nil && !errors.Is(err, ErrStreamCut):
		s.err = fmt.Errorf("%w: %w", ErrStreamCut, err)
	case err != nil:
		s.err = err
	}
	if s.err != nil && s.err != io.EOF && s.onCut != nil && !s.closed.Load() {
		s.onCut() // the backend's failure, for its health (unless the caller ended the stream)
	}
}

// Close closes the connection and ends the attempt's context.
func (s *streamBody) Close() error {
	s.closed.Store(true) // a read that fails from now on was ended by the caller
	if s.idle != nil {
		s.idle.Stop()
	}
	err := s.body.Close()
	if s.cancel != nil {
		s.cancel()
	}
	return err
}

// StreamCutError is the error of a ChatCompletionStream cut after its first content reached the caller. It
// matches ErrStreamCut, and errors.As through it reaches the cause: an *openai.APIError from an error event that
// the server sent, a connection error, or the context's error.
type StreamCutError struct {
	// Region is the backend that served the stream.
	Region string
	// Received is the text of the first choice received before the cut.
	Received string
	// Err is why the stream ended.
	Err error
}

func (e *StreamCutError) Error() string {
	return fmt.Sprintf("failover: stream from %s cut after %d bytes of text: %v", e.Region, len(e.Received), e.Err)
}

// Is reports whether target is ErrStreamCut.
func (e *StreamCutError) Is(target error) bool { return target == ErrStreamCut }

// Unwrap returns the cause.
func (e *StreamCutError) Unwrap() error { return e.Err }

// streamCut records that a stream of model served by b broke off after its first content: a failure of b for
// model, unless the caller ended it.
func (e *engine) streamCut(ctx context.Context, b *backend, model string) {
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	r, _ := b.health.failed(model, ticket{start: now}, http.StatusOK, verdict{kind: restFailing}, &e.rests, now)
	if e.share != nil && !r.until.IsZero() {
		e.share.save(ctx, b, model, r, ticket{})
	}
}
