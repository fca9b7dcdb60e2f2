package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pacedRegion streams a chat completion one chunk per value sent on next, then [DONE] when next is closed. ended
// is closed when a request's context ends (the gateway ended the upstream stream, or it was whole).
type pacedRegion struct {
	next  chan struct{}
	ended chan struct{}
	once  atomic.Bool
}

func newPacedRegion() *pacedRegion {
	return &pacedRegion{next: make(chan struct{}), ended: make(chan struct{})}
}

const pacedChunk = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n"

func (p *pacedRegion) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if !strings.Contains(r.URL.Path, "chat/completions") {
		http.NotFound(w, r)
		return
	}
	defer func() {
		if p.once.CompareAndSwap(false, true) {
			close(p.ended)
		}
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("x-ratelimit-remaining-tokens", "9000")
	rc := http.NewResponseController(w)
	for {
		_, _ = io.WriteString(w, pacedChunk)
		_ = rc.Flush()
		select {
		case _, more := <-p.next:
			if !more {
				_, _ = io.WriteString(w, "data: [DONE]\n\n")
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

// takeOverFront is a region behind a client behind a gateway served through its Listener on loopback, with a
// count of the connections net/http saw hijacked (taken over).
type takeOverFront struct {
	gateway  *gateway.Gateway
	server   *httptest.Server
	url      string
	hijacked atomic.Int64
	opened   atomic.Int64
}

func startTakeOverFront(t *testing.T, region http.Handler, cfg gateway.Config, useTLS bool, configure ...func(*http.Server)) *takeOverFront {
	return startFront(t, region, cfg, useTLS, true, configure...)
}

func startFront(t *testing.T, region http.Handler, cfg gateway.Config, useTLS, throughListener bool, configure ...func(*http.Server)) *takeOverFront {
	t.Helper()
	f := &takeOverFront{gateway: gatewayFor(t, cfg, region)}
	f.server = httptest.NewUnstartedServer(f.gateway)
	if throughListener {
		f.server.Listener = f.gateway.Listener(f.server.Listener)
	}
	f.server.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateHijacked:
			f.hijacked.Add(1)
		case http.StateNew:
			f.opened.Add(1)
		}
	}
	for _, c := range configure {
		c(f.server.Config)
	}
	if useTLS {
		f.server.StartTLS()
	} else {
		f.server.Start()
	}
	t.Cleanup(func() {
		f.server.Close()
		assert.NoError(t, f.gateway.Shutdown(context.Background()))
	})
	f.url = f.server.URL
	return f
}

func streamRequest(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// metric reads one sample of the gateway's /metrics, 0 when it is missing.
func metric(t *testing.T, url, sample string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	resp, body := do(t, req)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return "0"
}

// A stream on a plain HTTP/1.1 connection from the Listener is taken over, reaches the caller whole with the
// gateway's headers, and its connection carries the next requests (a stream, then a plain request).
func TestTakenOverStreamKeepsItsConnection(t *testing.T) {
	region := newPacedRegion()
	close(region.next) // every stream: one chunk, then [DONE]
	f := startTakeOverFront(t, region, gateway.Config{}, false)
	caller := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer caller.CloseIdleConnections()

	var reused []bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	for range 2 {
		resp, err := caller.Do(streamRequest(t, ctx, f.url))
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err, "the chunked body ends cleanly")
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, pacedChunk+"data: [DONE]\n\n", string(body))
		assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
		assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		assert.Equal(t, "eastus", resp.Header.Get("X-Failover-Region"))
		assert.Equal(t, "1", resp.Header.Get("X-Failover-Attempts"))
		assert.Equal(t, "9000", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		assert.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
		assert.NotEmpty(t, resp.Header.Get("Date"))
		assert.False(t, resp.Close, "the connection is kept")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url+"/healthz", nil)
	require.NoError(t, err)
	resp, err := caller.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok\n", string(body))

	assert.Equal(t, []bool{false, true, true}, reused, "one connection carried the three requests")
	assert.EqualValues(t, 2, f.hijacked.Load(), "both streams were taken over")
	assert.Equal(t, "2", metric(t, f.url, `aoai_gateway_requests_total{api="openai",operation="chat/completions",status="200"}`))
	assert.Equal(t, "0", metric(t, f.url, "aoai_gateway_in_flight_requests"))
}

// A caller hanging up mid-stream ends the upstream stream at once (not at the next event), which is not a cut by
// the region; the request ends and its connection closes.
func TestCallerLeavingATakenOverStreamEndsItUpstream(t *testing.T) {
	region := newPacedRegion() // one chunk, then nothing until the test ends
	defer close(region.next)
	f := startTakeOverFront(t, region, gateway.Config{}, false)
	caller := &http.Client{Transport: &http.Transport{}}
	defer caller.CloseIdleConnections()

	resp, err := caller.Do(streamRequest(t, context.Background(), f.url))
	require.NoError(t, err)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, strings.SplitAfter(pacedChunk, "\n")[0], line)
	resp.Body.Close() // unread: the transport closes the connection
	select {
	case <-region.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the region's stream went on after the caller left")
	}
	require.Eventually(t, func() bool {
		return metric(t, f.url, "aoai_gateway_in_flight_requests") == "0" &&
			metric(t, f.url, "aoai_gateway_open_connections") == "1" // the /metrics request's own
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, "0", metric(t, f.url, "aoai_gateway_stream_cuts_total"))
	assert.EqualValues(t, 1, f.hijacked.Load())
}

// rawStream dials f's gateway, sends a stream request with the extra header lines (each ending in \r\n) and then
// what follows (pipelined requests), and reads the stream's answer whole; it returns the answer and the reader of
// the connection, for what comes after it.
func rawStream(t *testing.T, f *takeOverFront, extra, follows string) (*http.Response, string, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", f.server.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	body := `{"model":"gpt-4o","stream":true,"messages":[]}`
	_, err = fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s%s", gatewayKey, len(body), extra, body, follows)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	in := bufio.NewReader(conn)
	resp, err := http.ReadResponse(in, nil)
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(got), in
}

// A request that says Connection: close gets a stream that says so too, and the connection ends with it.
func TestTakenOverStreamHonoursConnectionClose(t *testing.T) {
	region := newPacedRegion()
	close(region.next)
	f := startTakeOverFront(t, region, gateway.Config{}, false)
	resp, got, in := rawStream(t, f, "Connection: close\r\n", "")
	assert.Equal(t, pacedChunk+"data: [DONE]\n\n", got)
	assert.True(t, resp.Close, "Connection: close")
	_, err := in.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the gateway closed the connection")
	assert.EqualValues(t, 1, f.hijacked.Load())
}

// After a stream, its connection waits for the caller's next request as net/http's idle connections do: up to the
// server's IdleTimeout, then the gateway closes it.
func TestTakenOverStreamConnectionClosesAtTheIdleTimeout(t *testing.T) {
	region := newPacedRegion()
	close(region.next)
	f := startTakeOverFront(t, region, gateway.Config{}, false, func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond })
	resp, got, in := rawStream(t, f, "", "")
	assert.Equal(t, pacedChunk+"data: [DONE]\n\n", got)
	assert.False(t, resp.Close)
	_, err := in.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "closed at the idle timeout, well before the test's 10 s deadline")
	require.Eventually(t, func() bool { return metric(t, f.url, "aoai_gateway_open_connections") == "1" },
		10*time.Second, 5*time.Millisecond, "only the /metrics request's connection is open")
}

// A request sent before the stream's answer (pipelined) is served after it, on the same connection.
func TestPipelinedRequestIsServedAfterATakenOverStream(t *testing.T) {
	region := newPacedRegion()
	close(region.next)
	f := startTakeOverFront(t, region, gateway.Config{}, false)
	_, got, in := rawStream(t, f, "", "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
	assert.Equal(t, pacedChunk+"data: [DONE]\n\n", got)
	second, err := http.ReadResponse(in, nil)
	require.NoError(t, err)
	next, err := io.ReadAll(second.Body)
	require.NoError(t, err)
	assert.Equal(t, "ok\n", string(next))
	assert.EqualValues(t, 1, f.hijacked.Load())
}

// Streams over TLS stay with net/http (the Listener hands the server the raw connection, which the server wraps):
// they are not taken over, and pass whole.
func TestStreamsOverTLSAreNotTakenOver(t *testing.T) {
	region := newPacedRegion()
	close(region.next)
	f := startTakeOverFront(t, region, gateway.Config{}, true)
	transport := f.server.Client().Transport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test server's own certificate
	transport.ForceAttemptHTTP2 = false
	transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1
	caller := &http.Client{Transport: transport}
	defer caller.CloseIdleConnections()
	resp, err := caller.Do(streamRequest(t, context.Background(), f.url))
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, 1, resp.ProtoMinor)
	assert.Equal(t, pacedChunk+"data: [DONE]\n\n", string(got))
	assert.Zero(t, f.hijacked.Load())
}

// Shutdown waits for the streams the gateway took over, which the server's Shutdown does not; when its context
// ends first, it cuts them (the caller gets the cut event) and returns the context's error.
func TestShutdownWaitsForTakenOverStreamsThenCutsThem(t *testing.T) {
	for _, cut := range []bool{false, true} {
		t.Run(map[bool]string{false: "waits", true: "cuts"}[cut], func(t *testing.T) {
			region := newPacedRegion()
			f := startTakeOverFront(t, region, gateway.Config{}, false)
			caller := &http.Client{Transport: &http.Transport{}}
			defer caller.CloseIdleConnections()
			resp, err := caller.Do(streamRequest(t, context.Background(), f.url))
			require.NoError(t, err)
			defer resp.Body.Close()
			in := bufio.NewReader(resp.Body)
			_, err = in.ReadString('\n')
			require.NoError(t, err)

			require.NoError(t, f.server.Config.Shutdown(context.Background()), "the server does not wait for a taken-over stream")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- f.gateway.Shutdown(ctx) }()
			region.next <- struct{}{} // the stream goes on while Shutdown waits
			event, err := in.ReadString('\n')
			require.NoError(t, err)
			for event == "\n" {
				event, err = in.ReadString('\n')
				require.NoError(t, err)
			}
			assert.Equal(t, strings.SplitAfter(pacedChunk, "\n")[0], event)
			select {
			case err := <-done:
				t.Fatalf("Shutdown returned (%v) while a stream was passing", err)
			default:
			}
			if cut {
				cancel()
				assert.ErrorIs(t, <-done, context.Canceled)
				rest, err := io.ReadAll(in)
				require.NoError(t, err, "the stream ends with its last chunk")
				assert.Contains(t, string(rest), `"code":"stream_cut"`)
				return
			}
			close(region.next)
			rest, err := io.ReadAll(in)
			require.NoError(t, err)
			assert.Equal(t, "\ndata: [DONE]\n\n", string(rest))
			assert.NoError(t, <-done)
		})
	}
}

// Streams served by a server whose listener is not the gateway's stay with net/http and pass whole.
func TestStreamsOffTheListenerAreNotTakenOver(t *testing.T) {
	region := newPacedRegion()
	close(region.next)
	f := startFront(t, region, gateway.Config{}, false, false)
	resp, err := http.DefaultClient.Do(streamRequest(t, context.Background(), f.url))
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, pacedChunk+"data: [DONE]\n\n", string(got))
	assert.Zero(t, f.hijacked.Load())
}

// panickyHandler is a slog.Handler that panics on the line of every proxied request.
type panickyHandler struct{ slog.Handler }

func (h panickyHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "aoai-gateway request" {
		panic("a logger that fails")
	}
	return h.Handler.Handle(ctx, r)
}

// A panic while a taken-over stream ends (here, in a Logger's handler) ends that stream's connection and request,
// as net/http ends a handler's that panics, not the process: the in-flight place is given back, and the gateway
// serves on.
func TestPanicPassingATakenOverStreamEndsItsConnectionOnly(t *testing.T) {
	region := newPacedRegion()
	close(region.next)
	var logged strings.Builder
	var mu sync.Mutex
	logger := slog.New(panickyHandler{slog.NewTextHandler(lockedWriter{&mu, &logged}, nil)})
	f := startTakeOverFront(t, region, gateway.Config{Logger: logger, MaxInFlight: 1}, false,
		func(s *http.Server) { s.ErrorLog = log.New(io.Discard, "", 0) }) // net/http's own recoveries, below
	for range 2 {
		resp, err := http.DefaultClient.Do(streamRequest(t, context.Background(), f.url))
		require.NoError(t, err)
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Error(t, err, "the stream's connection closed before its last chunk")
	}
	assert.EqualValues(t, 2, f.hijacked.Load(), "the second stream was served: the first gave its in-flight place back")
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, logged.String(), "panic passing a stream")
	assert.Contains(t, logged.String(), "a logger that fails")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
