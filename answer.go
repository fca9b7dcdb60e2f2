package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// A backend's answer, held in memory: error answers to classify and scrub, and successful non-streaming answers
// read whole under the attempt timeout, on pooled buffers.

// maxErrorBody bounds what is read of an error answer; Azure's are well under 10 KiB.
const maxErrorBody = 1 << 20

// bodyOf is resp's body; nil without a response.
func bodyOf(resp *http.Response) io.ReadCloser {
	if resp == nil {
		return nil
	}
	return resp.Body
}

// isEventStream reports whether resp is a stream of server-sent events, which is passed on as it arrives.
func isEventStream(resp *http.Response) bool {
	return strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
}

// looksLikeObject is a cheap check that data is one JSON object: it catches an empty answer, an HTML error page and
// most cut answers (a cut that the transport did not already report) without a second parse of every answer;
// json.Valid would cost some 3% of a whole call. What slips through fails in the caller's decoder.
func looksLikeObject(data []byte) bool {
	data = bytes.TrimSpace(data)
	return len(data) >= 2 && data[0] == '{' && data[len(data)-1] == '}'
}

// bodyReader is a response body over bytes already in memory. Read and Close may run concurrently, as on
// net/http's own bodies: a pooled buffer must go back to the pool once, and never while a Read copies from it.
type bodyReader struct {
	mu     sync.Mutex
	r      bytes.Reader
	data   []byte
	pooled *[]byte // where data goes back to answerBuffers on Close; nil when it does not
}

func newBodyReader(data []byte) *bodyReader {
	b := &bodyReader{data: data}
	b.r.Reset(data)
	return b
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Read(p)
}

// WriteTo writes the rest of the body to w straight from memory: io.Copy, as the gateway passes an answer on,
// would otherwise take a 32 KiB buffer to copy it through (a new one per answer when w offers no ReadFrom of its
// own). It writes in pieces, so that a concurrent Close waits for the write of one piece at most.
func (b *bodyReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		b.mu.Lock()
		rest := b.data[len(b.data)-b.r.Len():]
		piece := rest[:min(len(rest), maxWritePiece)]
		n, err := 0, error(nil)
		if len(piece) > 0 {
			n, err = w.Write(piece)
			_, _ = b.r.Seek(int64(n), io.SeekCurrent)
		}
		b.mu.Unlock()
		total += int64(n)
		if err != nil || len(piece) == 0 {
			return total, err
		}
		if n < len(piece) {
			return total, io.ErrShortWrite
		}
	}
}

// maxWritePiece is the most WriteTo writes under the lock.
const maxWritePiece = 32 << 10

// Close recycles a pooled buffer. Reads after Close see an empty body, never bytes of a later answer.
func (b *bodyReader) Close() error {
	b.mu.Lock()
	buf := b.pooled
	if buf != nil {
		b.r.Reset(nil)
		*buf, b.data, b.pooled = b.data[:0], nil, nil
	}
	b.mu.Unlock()
	if buf != nil {
		answerBuffers.Put(buf)
	}
	return nil
}

// answerBuffers recycles the buffers of successful non-streaming answers: go-openai decodes from a buffer of its
// own, so ours is free again once the body is closed, and a buffered answer then costs no more garbage than a
// direct call. Error answers are not pooled: their bytes live on in the errors made from them.
var answerBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledAnswer keeps rare large answers (embeddings batches) from pinning memory in the pool.
const maxPooledAnswer = 64 << 10

// bufferBody reads resp's body (at most limit bytes) into memory and replaces it with a bodyReader, on a pooled
// buffer if pooled is set. room, when not nil, is asked for the bytes of the buffer before they are taken (see
// WithAnswerBudget).
func bufferBody(resp *http.Response, limit int64, pooled bool, room func(int64) bool) (*bodyReader, error) {
	var buf *[]byte
	if pooled {
		buf = answerBuffers.Get().(*[]byte)
	} else {
		buf = new([]byte)
	}
	data, err := readAll(*buf, resp.Body, resp.ContentLength, limit, room)
	resp.Body.Close()
	if err != nil {
		if pooled {
			answerBuffers.Put(buf)
		}
		return nil, fmt.Errorf("reading response body: %w", err)
	}
	body := newBodyReader(data)
	if pooled && cap(data) <= maxPooledAnswer {
		body.pooled = buf
	}
	resp.Body, resp.ContentLength = body, int64(len(data))
	return body, nil
}

// readAll reads r to its end into buf (grown as needed), sized by hint when the length is known, failing past
// limit bytes, or with ErrAnswerBudget when room (if not nil) refuses the bytes of a buffer before it is taken.
func readAll(buf []byte, r io.Reader, hint, limit int64, room func(int64) bool) ([]byte, error) {
	if hint < 0 || hint > limit {
		hint = 512
	}
	var held int64 // the bytes room has granted
	grow := func(data []byte, to int64) ([]byte, error) {
		if room != nil && to > held {
			if !room(to - held) {
				return nil, ErrAnswerBudget
			}
			held = to
		}
		if int64(cap(data)) >= to {
			return data, nil
		}
		grown := make([]byte, len(data), to) // exactly what room granted: append would round it up
		copy(grown, data)
		return grown, nil
	}
	data, err := grow(buf[:0], max(hint+1, int64(cap(buf)))) // +1: the read that sees EOF needs room
	if err != nil {
		return nil, err
	}
	for {
		n, err := r.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if int64(len(data)) > limit {
			return nil, errBodyTooLarge
		}
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
		if len(data) == cap(data) {
			if data, err = grow(data, min(2*int64(cap(data)), limit+1)); err != nil {
				return nil, err
			}
		}
	}
}

// ErrAnswerBudget is the cause of a request whose answer the client had no room to hold under the budget
// WithAnswerBudget gave it. No region is at fault, and none rests for it.
var ErrAnswerBudget = errors.New("no room to hold the answer in memory")

// answerBudgetKey carries a request's budget for answers in its context.
type answerBudgetKey struct{}

// WithAnswerBudget returns a context under which the client asks room for the bytes of each answer it holds in
// memory (a non-streaming answer is read whole before it is handed over, up to 256 MiB; a stream or a file's
// content is passed on as it comes, and not counted) before it takes them:
// the answer's length, when the region sent one, else each growth of its buffer as it is read. When room refuses,
// the request ends at once with an error matching ErrAnswerBudget. The client never gives the bytes back: they
// are the caller's to return once the request is over, as only the caller knows when it is done with the answer.
// With hedging, attempts run at once, so room may be called from several goroutines at once.
// The gateway keeps its memory budget with it.
func WithAnswerBudget(ctx context.Context, room func(n int64) bool) context.Context {
	return context.WithValue(ctx, answerBudgetKey{}, room)
}

// answerBudget is the budget WithAnswerBudget put in ctx, or nil.
func answerBudget(ctx context.Context) func(int64) bool {
	room, _ := ctx.Value(answerBudgetKey{}).(func(int64) bool)
	return room
}
