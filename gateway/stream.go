package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/aoai-failover/failover"
)

// streamEvents passes a stream of server-sent events on, event by event as the client hands them over, flushing
// at the end of every event so that each reaches the caller as soon as it arrived. A stream cut upstream ends
// with an error event of its own, which OpenAI clients raise as an error, rather than with a silent end that some
// would take for a complete answer. It reports whether the stream was cut upstream.
func streamEvents(w http.ResponseWriter, rc *http.ResponseController, body io.Reader) (cut bool) {
	events := failover.NewEventReader(body)
	var sent eventTail
	for {
		event, err := events.Next()
		if err != nil && err != io.EOF {
			event = event[:bytes.LastIndexByte(event, '\n')+1] // half a line is dropped
		}
		if !write(w, event) {
			return false // the caller is gone; closing the body ends the upstream stream
		}
		sent.add(event)
		switch {
		case err == nil:
			if sent.atEventEnd() && !flush(rc) {
				return false
			}
		case err == io.EOF:
			flush(rc) // a last line without its newline went on as the region sent it
			return false
		default:
			// An event the region left open is closed, so that the cut event parses on its own.
			if !sent.atEventEnd() {
				write(w, []byte("\n"))
			}
			event := failover.ErrorAnswer{Status: http.StatusBadGateway, Code: "stream_cut", Message: err.Error()}.Body()
			write(w, []byte("data: "+string(event)+"\n\n"))
			flush(rc)
			return true
		}
	}
}

func write(w io.Writer, data []byte) bool {
	if len(data) == 0 {
		return true
	}
	_, err := w.Write(data)
	return err == nil
}

// flush sends what was written; a ResponseWriter that cannot flush (a middleware's, say) sends it later, which
// delays events but loses none.
func flush(rc *http.ResponseController) bool {
	err := rc.Flush()
	return err == nil || errors.Is(err, http.ErrNotSupported)
}

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
