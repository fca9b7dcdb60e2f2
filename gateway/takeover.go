package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// A stream served by net/http holds, for its whole life, what net/http holds for any request: the connection's
// goroutine and its stack, the goroutine that watches for the caller hanging up, a 4 KiB reader, a 4 KiB writer
// and a 2 KiB chunk writer, and the request and response. For a stream on a plain HTTP/1.1 connection that one
// of the gateway's Listeners accepted, the gateway takes the connection over once the region's answer has begun
// (http.ResponseController.Hijack), writes the answer's head itself, and passes the events on in HTTP/1.1 chunks
// from a goroutine of its own, which starts with a small stack and keeps it; net/http's buffers, request and
// goroutine are then let go. When the stream ends, the connection goes back to the Listener, which hands it to
// the server again as it would a new one: keep-alive is kept. A stream over TLS or HTTP/2, or on a connection
// the gateway's Listener did not accept, stays with net/http. gateway/internal/leanbench measures the difference.

// takenStream is a stream on a connection the gateway took over.
type takenStream struct {
	conn    net.Conn
	out     chunkWriter
	keep    bool          // the connection goes back to the Listener at the end
	pending []byte        // what the caller sent past its request: the next one's beginning
	watched chan struct{} // closed when watch returns
	gone    bool          // the caller hung up (set by watch)
	cancel  context.CancelFunc
}

// takeOver passes the stream resp on over r's connection itself, past the handler's return, if r came as plain
// HTTP/1.1 on a connection one of the gateway's Listeners accepted; it reports whether it did. The stream then
// ends the request (see exchange.end).
func (g *Gateway) takeOver(ctx context.Context, w http.ResponseWriter, r *http.Request, resp *http.Response, ex *exchange) bool {
	if r.TLS != nil || r.ProtoMajor != 1 || r.ProtoMinor < 1 || !g.conns.served(r) {
		return false
	}
	s := &takenStream{watched: make(chan struct{}), cancel: ex.cancel}
	if !g.taken.add(s) { // shutting down: the stream stays with the server, whose Shutdown waits for it
		return false
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		g.taken.remove(s)
		return false
	}
	ex.takenOver = true
	ex.untie() // the handler's return must not end the request
	g.taken.attach(s, conn)
	if n := rw.Reader.Buffered(); n > 0 { // the caller's next request, sent before this one's answer (pipelining)
		next, _ := rw.Reader.Peek(n)
		s.pending = bytes.Clone(next)
	}
	own, ok := conn.(*limitConn)
	s.keep = ok && own.listener != nil && !r.Close
	// net/http lifted the deadlines; the request's write deadline holds again (see proxy).
	_ = conn.SetWriteDeadline(ex.start.Add(g.cfg.RequestTimeout + timeoutAnswerGrace))
	if _, err := conn.Write(head(w.Header(), resp.StatusCode, s.keep)); err != nil {
		s.out.err = err
	}
	go s.watch()
	go g.pass(ctx, s, resp.Body, ex, resp.StatusCode)
	return true
}

// head is an HTTP/1.1 answer's status line and headers for a chunked body, as net/http would write them.
func head(h http.Header, status int, keep bool) []byte {
	h.Del("Content-Length")
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if !keep {
		h.Set("Connection", "close")
	}
	b := bytes.NewBuffer(make([]byte, 0, 512))
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	_ = h.Write(b)
	b.WriteString("\r\n")
	return b.Bytes()
}

// watch reads the connection while the stream passes, as net/http does for a request it serves: the caller's
// hanging up ends the request, and with it the upstream stream, at once rather than at the next event. A byte
// that arrives is the beginning of the caller's next request, kept for it; the stream's end stops the watch
// with a read deadline in the past.
func (s *takenStream) watch() {
	defer close(s.watched)
	var b [1]byte
	n, err := s.conn.Read(b[:])
	switch {
	case n == 1:
		s.pending = append(s.pending, b[0])
	case errors.Is(err, os.ErrDeadlineExceeded):
	default:
		s.gone = true
		s.cancel()
	}
}

// pass passes the stream's events on until it ends, then ends the request. It is the goroutine the stream keeps:
// what it reaches at every event is all its stack will hold.
func (g *Gateway) pass(ctx context.Context, s *takenStream, body io.ReadCloser, ex *exchange, status int) {
	cut := passStream(ctx, &s.out, body, ex.rt.typed)
	g.endTaken(ctx, s, body, ex, status, cut)
}

// endTaken ends a stream on a connection the gateway took over: the body's last chunk, then the connection goes
// back to its Listener (or is closed when it cannot carry another request), then the request ends.
func (g *Gateway) endTaken(ctx context.Context, s *takenStream, body io.ReadCloser, ex *exchange, status int, cut bool) {
	_ = body.Close()
	if cut {
		g.metrics.streamCuts.Add(1)
	}
	if s.out.err == nil {
		_, s.out.err = s.conn.Write([]byte("0\r\n\r\n"))
	}
	_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	<-s.watched
	if own, ok := s.conn.(*limitConn); ok && s.keep && !s.gone && s.out.err == nil {
		_ = s.conn.SetDeadline(time.Time{})
		own.pending = s.pending
		own.listener.requeue(own)
	} else {
		_ = s.conn.Close()
	}
	g.taken.remove(s)
	g.end(ctx, ex, status)
}

// chunkWriter writes each piece of a stream to the connection as one HTTP/1.1 chunk, in one write, so that an
// event reaches the caller as soon as it is written: Flush has nothing left to do. The first error stays.
type chunkWriter struct {
	conn net.Conn
	err  error
}

// chunkBuffers are the buffers chunks are framed in, shared by every stream rather than held by each.
var chunkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (c *chunkWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	buf := chunkBuffers.Get().(*[]byte)
	b := strconv.AppendInt((*buf)[:0], int64(len(p)), 16)
	b = append(append(append(b, "\r\n"...), p...), "\r\n"...)
	_, c.err = c.conn.Write(b)
	if cap(b) <= 64<<10 {
		*buf = b[:0]
		chunkBuffers.Put(buf)
	}
	if c.err != nil {
		return 0, c.err
	}
	return len(p), nil
}

func (c *chunkWriter) Flush() error { return c.err }

// takenStreams are the streams on connections the gateway took over, which a server's Shutdown does not see.
type takenStreams struct {
	mu      sync.Mutex
	streams map[*takenStream]struct{}
	closing bool
	drained chan struct{} // closed when the last stream ends while Shutdown waits
}

// add counts s in, unless the gateway is shutting down.
func (t *takenStreams) add(s *takenStream) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	if t.streams == nil {
		t.streams = make(map[*takenStream]struct{})
	}
	t.streams[s] = struct{}{}
	return true
}

// attach gives s its connection, once taken over.
func (t *takenStreams) attach(s *takenStream, conn net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.conn, s.out.conn = conn, conn
}

func (t *takenStreams) remove(s *takenStream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.streams, s)
	if len(t.streams) == 0 && t.drained != nil {
		close(t.drained)
		t.drained = nil
	}
}

// Shutdown waits for the streams the gateway took over from net/http (see Listener) to end, as http.Server's
// Shutdown waits for the requests it serves, which do not include them: call it after the server's Shutdown,
// with the same context. From its call on, no stream is taken over. When ctx ends first, the streams still
// passing are cut (with their cut event, given a second to be written) and it returns ctx's error once they
// have ended.
func (g *Gateway) Shutdown(ctx context.Context) error {
	t := &g.taken
	t.mu.Lock()
	t.closing = true
	if len(t.streams) == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.drained == nil {
		t.drained = make(chan struct{})
	}
	drained := t.drained
	t.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	for s := range t.streams {
		s.cancel()
		if s.conn != nil {
			_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		}
	}
	t.mu.Unlock()
	<-drained
	return ctx.Err()
}
