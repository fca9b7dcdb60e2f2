package gateway_test

// Second review of the take-over of streams (gateway/takeover.go, listener.go at e536270), on the lifecycle of a
// taken-over connection. Each test says what it shows, what is right, and the suspected cause. The helpers are
// the first review's (review_takeover_test.go).

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// review2Plain counts the plain (not stream) requests a region serves, for the tests that check whether a
// request reached it at all.
type review2Plain struct {
	*reviewRegion
	plain atomic.Int32
}

// newReview2Region is a reviewRegion (send as there) whose plain requests are counted.
func newReview2Region(t *testing.T, send func(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController)) *review2Plain {
	t.Helper()
	reg := &review2Plain{reviewRegion: newReviewRegion(t, send)}
	inner := reg.Config.Handler
	reg.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(body), `"stream":true`) {
			reg.plain.Add(1)
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		inner.ServeHTTP(w, r)
	})
	return reg
}

// noMoreThan reports whether n stays at most want for d (a bounded negative check).
func noMoreThan(n *atomic.Int32, want int32, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if n.Load() > want {
			return false
		}
		reviewPollPause()
	}
	return n.Load() <= want
}

// FAILED (mended: only a byte read, or endTaken's own stop, is a next request). A request pipelined behind a stream request that said "Connection: close" must never be served: net/http
// reads nothing past a request with Connection: close (it answers it with Connection: close and closes), and the
// taken-over stream's answer says Connection: close too. Here the pipelined request still goes upstream (a call
// to Azure, paid for, whose answer is written to a closed connection).
// Suspected cause: endTaken, keep false, closes the connection while the watch is still reading; the watch's Read
// fails (n 0), but s.pending holds the pipelined bytes (Peeked from net/http's reader in takeOver), so watch takes
// "next && ended" and gives the closed connection back (giveBack → requeue, the listener being open): Accept hands
// the server a closed connection whose limitConn.pending holds the pipelined request, and the server serves it
// (its MaxConnections slot already given back by endTaken's Close: one more connection is served than allowed).
// watch should count a byte as the next request only when it read one (n == 1) or when endTaken's own deadline
// (time.Unix(1, 0)) stopped it on a connection kept; a Read that failed otherwise is a hang-up or a close.
func TestReview2PipelinedRequestAfterConnectionCloseIsNotServed(t *testing.T) {
	reg := newReview2Region(t, nil)
	var handled atomic.Int32 // requests the server read and handed to the gateway
	rig := newReviewRig(t, gateway.Config{}, reg.URL, func(s *http.Server) {
		gw := s.Handler
		s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handled.Add(1)
			gw.ServeHTTP(w, r)
		})
	})
	c := reviewDial(t, rig.addr)
	c.send(t, reviewRawRequest("/v1/chat/completions", reviewStreamBody, "Connection: close\r\n")+
		reviewRawRequest("/v1/chat/completions", reviewPlainBody, ""))
	resp, body := c.answer(t)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.True(t, resp.Close, "the stream's answer says Connection: close")
	require.Contains(t, body, "[DONE]")
	require.Equal(t, int32(1), rig.hijacked.Load(), "the stream was taken over")
	assert.True(t, c.closedByServer(t), "the connection closes after the stream")
	// The server hands the pipelined request to the gateway (deterministic); whether it then reaches the region
	// depends on whether net/http's background read of the closed connection cancels it first (most runs, not all).
	assert.True(t, noMoreThan(&handled, 1, time.Second),
		"the request pipelined behind Connection: close was read and served (%d requests handled, %d reached the region)",
		handled.Load(), reg.plain.Load())
}

// FAILED (mended as above). A caller that hangs up mid-stream must end the upstream stream at once, also when it had pipelined its
// next request behind the stream's (net/http's background read sees the EOF and cancels the request's context,
// pipelined bytes in its reader or not). Here the upstream stream, which stalls between events as a model that
// thinks does, runs on until RequestTimeout (10 minutes by default): the gateway keeps a region's stream, and its
// in-flight place, for a caller that is gone.
// Suspected cause: watch treats any return of its Read as the next request's beginning when s.pending is not
// empty (next := len(s.pending) > 0), so the caller's EOF neither sets gone nor cancels; nothing reads the
// connection after that, so nothing else sees the hang-up until a write fails.
func TestReview2CallerHangsUpWithARequestPipelined(t *testing.T) {
	reg := newReview2Region(t, func(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController) {
		_, _ = io.WriteString(w, contentEvent)
		_ = rc.Flush()
		select { // stalls until the gateway lets go, or at most 3 × reviewWait
		case <-ctx.Done():
		case <-time.After(3 * reviewWait):
		}
	})
	rig := newReviewRig(t, gateway.Config{}, reg.URL, nil)
	c := reviewDial(t, rig.addr)
	c.send(t, reviewRawRequest("/v1/chat/completions", reviewStreamBody, "")+
		reviewRawRequest("/v1/chat/completions", reviewPlainBody, ""))
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "Hello ")
	require.Equal(t, int32(1), rig.hijacked.Load(), "the stream was taken over")
	require.NoError(t, c.Close())
	select {
	case <-reg.upstreamDone:
	case <-time.After(3 * time.Second):
		t.Error("the upstream stream ran on 3 s after its caller hung up (a request was pipelined behind it)")
	}
	// Let the stream end (RequestTimeout would, after 10 minutes) so that the rig's cleanup does not wait.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_ = rig.gw.Shutdown(ctx)
	assert.True(t, noMoreThan(&reg.plain, 0, 300*time.Millisecond), "the hung-up caller's pipelined request was served")
}

// review2WrapListener wraps each connection of a listener in a type of its own, as a program does that counts
// bytes, or limits connections with golang.org/x/net/netutil.LimitListener, around the gateway's Listener.
type review2WrapListener struct{ net.Listener }

type review2WrapConn struct{ net.Conn }

func (l review2WrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return review2WrapConn{c}, nil
}

// startReview2Wrapped serves gw through review2WrapListener(gw.Listener(127.0.0.1:0)) and returns its address.
func startReview2Wrapped(t *testing.T, region string) (addr string, hijacked *atomic.Int32) {
	t.Helper()
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: region, APIKey: "region-key-1"}},
		failover.WithMaxWait(0))
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	gw, err := gateway.New(client, gateway.Config{Keys: []string{gatewayKey}})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hijacked = new(atomic.Int32)
	srv := &http.Server{Handler: gw, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateHijacked {
			hijacked.Add(1)
		}
	}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(review2WrapListener{gw.Listener(ln)}) }()
	t.Cleanup(func() {
		_ = srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), reviewWait)
		defer cancel()
		assert.NoError(t, gw.Shutdown(ctx))
		<-served
	})
	return ln.Addr().String(), hijacked
}

// FAILED (the test binary it ran crashed; mended as above). A program that wraps the gateway's Listener in a listener of its own
// (its connections are no *limitConn, but their addresses are in the gateway's table, so streams are taken over):
// a stream request with a request pipelined behind it crashes the whole process when the stream ends:
// "panic: interface conversion: net.Conn is gateway_test.review2WrapConn, not *gateway.limitConn" in watch →
// giveBack, a goroutine no recover covers. Right: the stream is answered (with Connection: close, as s.keep is
// false) and the process goes on.
// Suspected cause: as in TestReview2PipelinedRequestAfterConnectionCloseIsNotServed, watch gives back a connection
// endTaken closed because s.pending is not empty; giveBack asserts s.conn.(*limitConn) unchecked (only s.keep
// promised one). The crash runs in a child process (this test binary, REVIEW2_CRASH_CHILD=1), so that it fails
// this test only.
func TestReview2WrappedListenerWithAPipelinedRequestDoesNotCrash(t *testing.T) {
	if os.Getenv("REVIEW2_CRASH_CHILD") == "1" {
		reg := newReview2Region(t, nil)
		addr, hijacked := startReview2Wrapped(t, reg.URL)
		c := reviewDial(t, addr)
		c.send(t, reviewRawRequest("/v1/chat/completions", reviewStreamBody, "")+
			reviewRawRequest("/v1/chat/completions", reviewPlainBody, ""))
		resp, body := c.answer(t)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Contains(t, body, "[DONE]")
		require.Equal(t, int32(1), hijacked.Load(), "the stream was taken over")
		_ = c.closedByServer(t) // the crash, if any, comes while the caller waits here
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*reviewWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReview2WrappedListenerWithAPipelinedRequestDoesNotCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REVIEW2_CRASH_CHILD=1")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if i := strings.Index(text, "panic:"); i >= 0 {
		text = text[i:min(len(text), i+600)]
	}
	assert.NoError(t, err, "the child test run failed or crashed:\n%s", text)
}

// Through a listener wrapped around the gateway's (as above), a stream taken over ends its connection: the
// answer says Connection: close. (The review asked for keep-alive, as net/http gives. Declined: the connection
// could go back only through the outer listener, which would wrap it, and count it, a second time; a wrapper is
// not visible before the connection is taken over. docs/gateway.md says to serve Listener itself, outermost.)
func TestReview2WrappedListenerClosesTheConnectionAfterAStream(t *testing.T) {
	reg := newReview2Region(t, nil)
	addr, hijacked := startReview2Wrapped(t, reg.URL)
	c := reviewDial(t, addr)
	c.send(t, reviewRawRequest("/v1/chat/completions", reviewStreamBody, ""))
	resp, body := c.answer(t)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, "[DONE]")
	assert.True(t, resp.Close, "Connection: close")
	assert.True(t, c.closedByServer(t))
	assert.Equal(t, int32(1), hijacked.Load())
}

// HOLDS (kept as a stress check of watch / endTaken / giveBack). MaxConnections 1: 200 streams in turn on one
// kept-alive connection, each next request sent the moment the stream's last chunk arrives (so the watch reads
// its first byte before, while or after endTaken parks the connection), then 100 connections that each carry a
// stream and hang up the moment it ends (during the idle wait, or before endTaken parks). A slot given back
// twice would let two connections in at once, one never given back would block the next dial's request; a read
// deadline left on a connection handed back would fail a request.
func TestReview2NextRequestOrHangUpAsTheStreamEnds(t *testing.T) {
	reg := newReview2Region(t, nil)
	rig := newReviewRig(t, gateway.Config{MaxConnections: 1}, reg.URL, func(s *http.Server) { s.IdleTimeout = time.Minute })
	stream := reviewRawRequest("/v1/chat/completions", reviewStreamBody, "")
	c := reviewDial(t, rig.addr)
	for i := range 200 {
		c.send(t, stream)
		resp, body := c.answer(t)
		require.Equal(t, http.StatusOK, resp.StatusCode, "stream %d: %s", i, body)
		require.Contains(t, body, "[DONE]", "stream %d", i)
		require.False(t, resp.Close, "stream %d", i)
	}
	require.NoError(t, c.Close())
	for i := range 100 {
		c := reviewDial(t, rig.addr)
		c.send(t, stream)
		resp, body := c.answer(t)
		require.Equal(t, http.StatusOK, resp.StatusCode, "connection %d: %s", i, body)
		require.NoError(t, c.Close())
	}
	assert.Equal(t, int32(300), rig.hijacked.Load(), "every stream was taken over")
	assert.Equal(t, "0", rig.eventually(t, "aoai_gateway_in_flight_requests", "0"))
	assert.Equal(t, "1", rig.eventually(t, "aoai_gateway_open_connections", "1"), "only /metrics' own connection")
}
