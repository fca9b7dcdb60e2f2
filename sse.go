package failover

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

const (
	// maxEventLine bounds one line of an event stream; a chunk is a few hundred bytes.
	maxEventLine = 1 << 20
	// maxEventPiece is the most of one event EventReader.Next returns at once: a longer one (many lines without
	// the blank line that ends an event) comes in pieces of whole lines, so that memory stays bounded.
	maxEventPiece = 1 << 20
)

// EventReader reads a stream of server-sent events (text/event-stream) one whole event at a time: every line of
// the event as it came, "event:", "id:" and comment lines as well as "data:" lines, through the blank line that
// ends it. Chat completions' streams carry their payload in data lines alone; the Responses API's streams are
// typed events, whose "event:" line matters too.
//
// Over the body of a stream the Client served, it reads what the Client passes on, event by event, without
// reading the bytes a second time.
type EventReader struct {
	lines  *bufio.Reader
	served *streamBody // the Client's own stream, which hands events over whole; nil over other readers
	long   []byte      // a line longer than the bufio.Reader's buffer, gathered
	event  []byte      // the event being returned
}

// NewEventReader returns an EventReader that reads events from r.
func NewEventReader(r io.Reader) *EventReader {
	if s, ok := r.(*streamBody); ok {
		return &EventReader{served: s}
	}
	return &EventReader{lines: bufio.NewReader(r)}
}

// Next returns the next event: its lines through the blank line that ends it, with nil; or, for an event over
// 1 MiB, its lines in pieces of whole lines, each with nil. When the stream ends or fails, it returns what was
// read of the unfinished event (perhaps nothing, perhaps ending in half a line) with io.EOF or the error. The
// bytes are valid until the next call.
func (r *EventReader) Next() ([]byte, error) {
	if r.served != nil {
		return r.served.nextEvent()
	}
	r.event = r.event[:0]
	for {
		line, err := r.readLine()
		r.event = append(r.event, line...)
		if err != nil {
			return r.event, err
		}
		if len(bytes.TrimSpace(line)) == 0 || len(r.event) >= maxEventPiece {
			return r.event, nil
		}
	}
}

// readLine reads one line, with its newline, up to maxEventLine bytes. The line is valid until the next call.
func (r *EventReader) readLine() ([]byte, error) {
	line, err := r.lines.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	r.long = append(r.long[:0], line...)
	for err == bufio.ErrBufferFull && len(r.long) <= maxEventLine {
		line, err = r.lines.ReadSlice('\n')
		r.long = append(r.long, line...)
	}
	if len(r.long) > maxEventLine {
		return nil, fmt.Errorf("stream line longer than %d bytes", maxEventLine)
	}
	return r.long, err
}
