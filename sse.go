package failover

import (
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
	src    io.Reader
	served *streamBody // the Client's own stream, which hands events over whole; nil over other readers
	lines  lineBuffer
	event  []byte // the event being returned
}

// NewEventReader returns an EventReader that reads events from r.
func NewEventReader(r io.Reader) *EventReader {
	if s, ok := r.(*streamBody); ok {
		return &EventReader{served: s}
	}
	return &EventReader{src: r}
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
	return r.lines.readLine(r.src)
}

// lineBuffer is the one buffer a stream is read through, a line at a time. Upstream bodies come through the
// Transport, which buffers the connection already: a bufio.Reader over them would hold a second 4 KiB per
// stream for its whole life, and a gateway holds thousands of streams. lineBuffer starts at lineBufferSize, grows
// only for a longer line (up to maxEventLine), and gives a grown buffer back once that line is read.
type lineBuffer struct {
	buf        []byte
	start, end int   // buf[start:end] is read but not yet returned
	err        error // the reader's error, returned once buf is read out
	empty      int   // reads in a row that returned nothing
}

// lineBufferSize holds a chat chunk or a typed delta event whole, with room to spare.
const lineBufferSize = 512

// readLine reads src's next line, with its newline, up to maxEventLine bytes; at src's end or failure, what is left
// (perhaps nothing, perhaps half a line) with the error. The line is valid until the next call.
func (b *lineBuffer) readLine(src io.Reader) ([]byte, error) {
	if len(b.buf) > lineBufferSize && b.end-b.start <= lineBufferSize/2 {
		b.shrink() // a long line's buffer is not kept for the rest of the stream
	}
	scanned := b.start // buf[start:scanned] holds no newline
	for {
		if i := bytes.IndexByte(b.buf[scanned:b.end], '\n'); i >= 0 {
			line := b.buf[b.start : scanned+i+1]
			b.start = scanned + i + 1
			if len(line) > maxEventLine {
				return nil, fmt.Errorf("stream line longer than %d bytes", maxEventLine)
			}
			return line, nil
		}
		if b.end-b.start > maxEventLine {
			return nil, fmt.Errorf("stream line longer than %d bytes", maxEventLine)
		}
		if b.err != nil {
			line := b.buf[b.start:b.end]
			b.start = b.end
			return line, b.err
		}
		scanned = b.end
		b.room()
		scanned -= b.start
		b.end -= b.start
		b.start = 0
		n, err := src.Read(b.buf[b.end:])
		b.end += n
		switch {
		case err != nil:
			b.err = err
		case n > 0:
			b.empty = 0
		case b.empty >= 100: // as bufio: a reader that returns nothing, forever, must not hold the stream
			b.err = io.ErrNoProgress
		default:
			b.empty++
		}
	}
}

// shrink moves the unread bytes to a buffer of lineBufferSize, allocated when they are read.
func (b *lineBuffer) shrink() {
	unread := b.buf[b.start:b.end]
	b.buf, b.start, b.end = nil, 0, len(unread)
	if len(unread) > 0 {
		b.buf = make([]byte, lineBufferSize)
		copy(b.buf, unread)
	}
}

// room moves the unread bytes to the start of the buffer and, if that leaves it full, doubles it.
func (b *lineBuffer) room() {
	unread := b.end - b.start
	if unread < len(b.buf) {
		if b.start > 0 { // else they are there already: a line read in many small pieces is not copied at each
			copy(b.buf, b.buf[b.start:b.end])
		}
		return
	}
	grown := make([]byte, min(max(lineBufferSize, 2*len(b.buf)), maxEventLine+1))
	copy(grown, b.buf[b.start:b.end])
	b.buf = grown
}
