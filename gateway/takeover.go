package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
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
// goroutine are then let go. When the stream ends, the connection waits for the caller's next request, and its
// first byte sends the connection back through the Listener's Accept to the server, as if it were new:
// keep-alive is kept. A stream over TLS or HTTP/2, or on a connection the gateway's Listener did not accept,
// stays with net/http. gateway/internal/leanbench measures the difference.

// takenStream is a stream on a connection the gateway took over. Its watch goes on past the stream's end, while
// the connection waits for the caller's next request (as net/http's idle connections do, but without their
// buffers): the first byte of it gives the connection back to the Listener.
type takenStream struct {
	conn   net.Conn
	out    chunkWriter
	idle   time.Duration // how long it waits for that request: the server's IdleTimeout; 0 for ever
	cancel context.CancelFunc

	mu       sync.Mutex // over the fields below, shared by the stream's goroutine and its watch
	keep     bool       // the connection is kept at the end, for the caller's next request
	pending  []byte     // what the caller sent past its request: the next one's beginning
	watching bool       // watch is reading
	gone     bool       // the caller hung up, or the connection failed
	ended    bool       // the answer is whole, or the stream failed: endTaken ran
	handBack bool       // endTaken stopped the watch to give the connection back for a pipelined request
}

// takeOver passes the stream resp on over r's connection itself, past the handler's return, if r came as plain
// HTTP/1.1 on a connection one of the gateway's Listeners accepted; it reports whether it did. The stream then
// ends the request (see exchange.end).
func (g *Gateway) takeOver(ctx context.Context, w http.ResponseWriter, r *http.Request, resp *http.Response, ex *exchange) bool {
	if r.TLS != nil || r.ProtoMajor != 1 || r.ProtoMinor < 1 || !g.conns.served(r) {
		return false
	}
	s := &takenStream{cancel: ex.cancel, watching: true, idle: idleTimeout(r)}
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
	// net/http lifted the deadlines; the request's write deadline holds again (see proxy).
	g.taken.attach(s, conn, ex.start.Add(g.cfg.RequestTimeout+timeoutAnswerGrace))
	if n := rw.Reader.Buffered(); n > 0 { // the caller's next request, sent before this one's answer (pipelining)
		next, _ := rw.Reader.Peek(n)
		s.pending = bytes.Clone(next)
	}
	own, ok := conn.(*limitConn)
	s.keep = ok && own.listener.open() && !r.Close // a closing Listener: the server is shutting down
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

// idleTimeout is how long r's server keeps an idle connection open: its IdleTimeout, else its ReadTimeout, as
// net/http reads them; 0 for ever.
func idleTimeout(r *http.Request) time.Duration {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	switch {
	case srv == nil:
		return 0
	case srv.IdleTimeout != 0:
		return srv.IdleTimeout
	default:
		return srv.ReadTimeout
	}
}

// watch reads the connection while the stream passes, as net/http does for a request it serves: the caller's
// hanging up ends the request, and with it the upstream stream, at once rather than at the next event. A byte
// that arrives is the beginning of the caller's next request, kept for it. After the stream's end it waits for
// that byte (see endTaken), up to the server's idle timeout.
func (s *takenStream) watch() {
	var b [1]byte
	n, _ := s.conn.Read(b[:])
	s.mu.Lock()
	s.watching = false
	if n == 1 {
		s.pending = append(s.pending, b[0])
	}
	// The caller's next request has begun: a byte came, or endTaken stopped the read because it had (pipelined).
	// An end of the connection is a hang-up, whatever was pipelined before it.
	next := n == 1 || s.handBack
	s.gone = s.gone || !next
	ended, keep := s.ended, s.keep
	s.mu.Unlock()
	switch {
	case next && ended && keep:
		s.giveBack()
	case next && !ended: // sent while the stream passed (pipelined): the stream's end gives the connection back
	case ended: // the idle wait ran out, the caller or the listener closed the connection, or endTaken did
		_ = s.conn.Close()
		s.unpark()
	default: // the caller hung up, or the connection failed
		s.cancel()
	}
}

// pass passes the stream's events on until it ends, then ends the request. It is the goroutine the stream keeps:
// what it reaches at every event is all its stack will hold.
func (g *Gateway) pass(ctx context.Context, s *takenStream, body io.ReadCloser, ex *exchange, status int) {
	defer g.recoverStream(ctx, s, body, ex, status)
	cut := passStream(ctx, &s.out, body, ex.rt.typed)
	g.endTaken(ctx, s, body, ex, status, cut)
}

// recoverStream stands for net/http's recovery of a handler's panic, which a stream past its handler no longer
// has: the connection is closed, the request ended, and the panic logged with its stack (as net/http logs it),
// rather than the process ended.
func (g *Gateway) recoverStream(ctx context.Context, s *takenStream, body io.ReadCloser, ex *exchange, status int) {
	p := recover()
	if p == nil {
		return
	}
	defer func() { _ = recover() }() // a Logger that panicked may panic again: the process goes on all the same
	defer g.taken.remove(s)
	s.mu.Lock()
	s.gone = true // not kept
	s.mu.Unlock()
	_ = s.conn.Close()
	_ = body.Close()
	if !ex.ended {
		g.end(ctx, ex, status)
	}
	if g.cfg.Logger != nil && p != http.ErrAbortHandler {
		g.cfg.Logger.LogAttrs(ctx, slog.LevelError, "aoai-gateway: panic passing a stream",
			slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
	}
}

// endTaken ends a stream on a connection the gateway took over: the request ends, the body's last chunk goes
// out, and the connection either waits for the caller's next request (watch goes on, under the idle timeout;
// the Listener closes it if it closes first), goes back to the Listener at once (the next request has begun), or
// is closed (it cannot carry another).
func (g *Gateway) endTaken(ctx context.Context, s *takenStream, body io.ReadCloser, ex *exchange, status int, cut bool) {
	defer g.taken.remove(s) // last: Shutdown returns once the request is accounted for and its connection settled
	_ = body.Close()
	if cut {
		g.metrics.streamCuts.Add(1)
	}
	// The request ends before its answer's last chunk, as a handler returns before net/http writes it: a caller
	// that sends its next request as soon as the answer is whole finds this one's in-flight place free.
	g.end(ctx, ex, status)
	if s.out.err == nil {
		_, s.out.err = s.conn.Write([]byte("0\r\n\r\n"))
	}
	_ = s.conn.SetWriteDeadline(time.Time{})
	s.mu.Lock()
	s.ended = true
	s.keep = s.keep && !s.gone && s.out.err == nil
	keep, watching := s.keep, s.watching
	if keep && watching {
		var deadline time.Time // for ever
		switch {
		case len(s.pending) > 0:
			// The next request has begun (pipelined): the watch stops now and gives the connection back.
			deadline, s.handBack = time.Unix(1, 0), true
		case s.idle > 0:
			deadline = time.Now().Add(s.idle)
		}
		_ = s.conn.SetReadDeadline(deadline)
		s.keep = s.park() // closed when the Listener closes
		keep = s.keep
	}
	s.mu.Unlock()
	switch {
	case !keep:
		_ = s.conn.Close() // a watch still reading ends, and sees ended
	case !watching:
		s.giveBack()
	}
}

// park counts the connection among its Listener's idle ones, which its Close closes; false when it is closed.
func (s *takenStream) park() bool {
	own := s.conn.(*limitConn) // s.keep: one of the Listener's
	return own.listener.park(own)
}

func (s *takenStream) unpark() {
	if own, ok := s.conn.(*limitConn); ok && s.keep {
		own.listener.unpark(own)
	}
}

// giveBack hands the connection back to its Listener, for the server to read the caller's next request: what
// was read of it first (net/http's buffer, the watch's byte), then what the connection still held of bytes
// given back before (see limitConn.Read), which the watch read from.
func (s *takenStream) giveBack() {
	s.unpark()
	own := s.conn.(*limitConn) // s.keep: one of the Listener's
	_ = own.SetDeadline(time.Time{})
	own.pending = append(s.pending, own.pending...)
	own.listener.requeue(own)
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
	cutting bool          // Shutdown's context ended: the streams are being cut
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

// attach gives s its connection, once taken over, with its write deadline: a second from now if Shutdown is
// cutting the streams already.
func (t *takenStreams) attach(s *takenStream, conn net.Conn, writeDeadline time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.conn, s.out.conn = conn, conn
	if t.cutting {
		writeDeadline = time.Now().Add(time.Second)
	}
	_ = conn.SetWriteDeadline(writeDeadline)
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
	t.cutting = true
	for s := range t.streams {
		s.mu.Lock()
		ended := s.ended // past its end, the connection may be the server's again
		s.mu.Unlock()
		if !ended {
			s.cancel()
			if s.conn != nil {
				_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
			}
		}
	}
	t.mu.Unlock()
	<-drained
	return ctx.Err()
}
