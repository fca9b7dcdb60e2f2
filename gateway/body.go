package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"

	"github.com/aoai-failover/failover"
)

// errOverBudget is a body that would take the bytes held past MaxHeldBytes.
var errOverBudget = errors.New("gateway: request body over the held-bytes budget")

// firstChunk is the buffer a body of unknown length starts with; it doubles as the body grows.
const firstChunk = 32 << 10

// readBody reads in, a request body of declared length (-1: unknown, a chunked one), whole, holding its bytes in
// the budget: a body of known length reserves them all before its first byte is read; one of unknown length
// reserves its buffer as it grows (up to limit+1 bytes), and fails with errOverBudget when growing would exceed the budget. held is what
// it reserved, which the caller frees (also after an error). in is already limited to limit bytes, the route's largest body.
func (g *Gateway) readBody(in io.Reader, declared, limit int64) (body []byte, held int64, err error) {
	if in == nil || in == http.NoBody {
		return nil, 0, nil
	}
	size := min(firstChunk, limit+1)
	if declared >= 0 {
		size = declared + 1 // the read that sees the end needs room
	}
	if !g.budget.reserve(size) {
		return nil, 0, errOverBudget
	}
	held = size
	data := make([]byte, 0, size)
	for {
		if len(data) == cap(data) {
			// Doubling, up to the limit (and the byte past it, which MaxBytesReader refuses): a chunked body's
			// buffer is at most twice its length.
			more := min(int64(cap(data)), limit+1-int64(cap(data)))
			if !g.budget.reserve(more) {
				return nil, held, errOverBudget
			}
			held += more
			grown := make([]byte, len(data), int64(cap(data))+more)
			copy(grown, data)
			data = grown
		}
		n, err := in.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, held, nil
		}
		if err != nil {
			return nil, held, err
		}
	}
}

// bodyError answers a request whose body could not be read whole (and returns the status): 413 over its limit, 408
// past BodyReadTimeout, 503 over the held-bytes budget, 400 for the rest. Over HTTP/1 the connection closes after
// the answer: its stream is at an unknown point of the body, and net/http would otherwise read what is left of
// it (up to 256 KiB) before the answer left, with no deadline once BodyReadTimeout's was lifted: a stalled
// body's caller would then hold the connection, unanswered, for as long as it liked.
func (g *Gateway) bodyError(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) int {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, errOverBudget):
		return g.shed(w, r, shedHeldBytes)
	case errors.As(err, &tooLarge):
		g.refused(r, http.StatusRequestEntityTooLarge, refusedTooLarge)
		return writeAnswer(w, failover.AnswerError(ctx, err))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return writeAnswer(w, failover.ErrorAnswer{Status: http.StatusRequestTimeout, Code: "408",
			Message: "the request body did not arrive within " + g.cfg.BodyReadTimeout.String()})
	}
	a := failover.AnswerError(ctx, err)
	if a.Status == http.StatusBadRequest {
		a.Message = "reading the request body: " + err.Error()
	}
	return writeAnswer(w, a)
}

// closeIfUnread closes an HTTP/1 connection after the answer to a request whose body is not read, and may never be
// (refused or shed before reading it): net/http would otherwise read what is left of it, up to 256 KiB, before it
// sent the answer, and a caller sending slowly would wait for its refusal until the body timeout.
func closeIfUnread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		w.Header().Set("Connection", "close")
	}
}
