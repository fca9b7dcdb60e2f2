package gateway_test

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReviewGwFileContentDownloadIsNotHeld: a file's content (GET files/{id}/content) is a call pinned to one
// region whose answer the client does not buffer: it streams from the region as the caller reads it. forward
// nevertheless counts its whole Content-Length in the held-bytes budget (budget.hold, since answers.held is 0),
// so one download larger than MaxHeldBytes makes aoai_gateway_held_bytes report bytes that are not held and sheds
// every other request with a body (503 gateway_overloaded) for as long as the download lasts. docs/gateway.md
// says the answers of pinned calls ("a file's content") are not counted. Right: a streamed (unbuffered) answer is
// not held; the download does not take the budget, and a small chat request beside it is served.
func TestReviewGwFileContentDownloadIsNotHeld(t *testing.T) {
	const limit = 64 << 10
	content := strings.Repeat("f", 8<<20) // 8 MiB: more than loopback sockets buffer, so the download stays open
	url := gatewayBefore(t, gateway.Config{MaxBodyBytes: limit, MaxUploadBytes: limit, MaxHeldBytes: 1 << 20},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			if strings.HasSuffix(r.URL.Path, "/content") {
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Header().Set("Content-Length", strconv.Itoa(len(content)))
				_, _ = io.WriteString(w, content)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, chatAnswer)
		}))
	req, err := http.NewRequest(http.MethodGet, url+"/v1/files/file-abc/content", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	download, err := http.DefaultClient.Do(req) // headers in; the body is not read yet
	require.NoError(t, err)
	defer download.Body.Close()
	require.Equal(t, http.StatusOK, download.StatusCode)

	held := metricValue(t, url, "aoai_gateway_held_bytes")
	resp, body := post(t, url, "/v1/chat/completions", chatBody("small", 1<<10), map[string]string{"api-key": gatewayKey})
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a small request beside a streamed download is served: %s", body)
	assert.Less(t, held, float64(1<<20), "a streamed download is not held in memory, yet held_bytes counts it")

	n, err := io.Copy(io.Discard, download.Body)
	require.NoError(t, err)
	assert.EqualValues(t, len(content), n)
}

// TestReviewGwInFlightShedIsAnsweredAtOnce: a request over MaxInFlight is to be answered 503 at once, but shed
// (budget.go, reached from proxy before the body is read) leaves the HTTP/1 connection open, and net/http then
// reads what is left of the unread body (up to 256 KiB) before it writes the answer's headers, not after as
// ServeHTTP's comment believes: a caller whose body is slow gets the "at once" 503 only when its body arrives or
// BodyReadTimeout passes, and holds the connection and its goroutine meanwhile. Right: as bodyError does, a shed
// request with an unread body is answered with Connection: close, so the 503 leaves at once.
func TestReviewGwInFlightShedIsAnsweredAtOnce(t *testing.T) {
	const bodyTimeout = 2 * time.Second
	region := newHeldRegion()
	defer region.releaseAll()
	url := gatewayBefore(t, gateway.Config{MaxInFlight: 1, BodyReadTimeout: bodyTimeout}, region)
	held := make(chan struct{})
	go func() {
		defer close(held)
		resp, body := post(t, url, "/v1/chat/completions", chatBody("hold", 100), map[string]string{"api-key": gatewayKey})
		assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	}()
	<-region.arrived // the one request in flight

	start := time.Now()
	conn := rawRequest(t, url, "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\napi-key: "+gatewayKey+
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", `{"model":"gpt-4o","messages":[`)
	require.NoError(t, conn.SetReadDeadline(start.Add(2*bodyTimeout))) // bounds the test
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	elapsed := time.Since(start)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Less(t, elapsed, bodyTimeout/2, "the shed answer waited %s for a body the gateway will never use", elapsed)

	region.releaseAll()
	<-held
}

// panickingTransport is a caller's transport with a bug: it panics in reviewGwTransportBug, a frame the stack
// net/http logs for the panic should show.
type panickingTransport struct{}

func (panickingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return reviewGwTransportBug()
}

//go:noinline
func reviewGwTransportBug() (*http.Response, error) { panic("review: transport bug") }

// TestReviewGwFreshStackPanicKeepsItsStack: onFreshStack (shallow.go) recovers a panic of client.Do on its own
// goroutine and raises the value again on the handler's, so net/http logs the stack of the re-raise (onFreshStack,
// doShallow, forward) and the frames where the panic happened are lost: a request that may stream (doShallow's
// fresh stack) panics without a trace of its cause, while the same bug in a request that does not is logged with
// it. Right: the stack is captured where the panic is recovered (debug.Stack) and goes out with the re-raised
// panic (http.ErrAbortHandler kept as it is), so that "http: panic serving" still names the panicking code.
func TestReviewGwFreshStackPanicKeepsItsStack(t *testing.T) {
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: "http://127.0.0.1:1", APIKey: "region-key-1"}},
		failover.WithMaxWait(0), failover.WithHTTPClient(&http.Client{Transport: panickingTransport{}}))
	require.NoError(t, err)
	defer client.CloseIdleConnections()
	gw, err := gateway.New(client, gateway.Config{Keys: []string{gatewayKey}})
	require.NoError(t, err)
	var logged lockedBuffer
	srv := httptest.NewUnstartedServer(gw)
	srv.Config.ErrorLog = log.New(&logged, "", 0)
	srv.Start()
	defer srv.Close()

	for _, body := range []string{`{"model":"gpt-4o","messages":[]}`, `{"model":"gpt-4o","stream":true,"messages":[]}`} {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("api-key", gatewayKey)
		resp, err := http.DefaultClient.Do(req)
		if err == nil { // net/http recovered the panic and dropped the connection
			resp.Body.Close()
		}
		// net/http logs the panic before it closes the connection the caller saw end.
		text := logged.String()
		assert.Contains(t, text, "review: transport bug", "the panic reaches net/http: %s", body)
		assert.Contains(t, text, "reviewGwTransportBug", "the logged stack names where the panic happened: %s", body)
		logged.Reset()
	}
}

// lockedBuffer is a bytes.Buffer for a log written from the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// TestReviewGwTooLargeIsRefusedNotShed: Config.MaxInFlight documents that requests refused before a region is
// asked are not counted in flight, but proxy takes the in-flight slot (budget.enter) before forward checks the
// declared length against MaxBodyBytes: at the limit, a body declared too large gets 503 gateway_overloaded with
// x-should-retry: true, so the caller's SDK retries a request that can only ever get 413. Right: the declared
// length is checked before the request enters the in-flight count, and the answer is 413 whatever the load.
func TestReviewGwTooLargeIsRefusedNotShed(t *testing.T) {
	const limit = 64 << 10
	region := newHeldRegion()
	defer region.releaseAll()
	url := gatewayBefore(t, gateway.Config{MaxInFlight: 1, MaxBodyBytes: limit, MaxUploadBytes: limit}, region)
	held := make(chan struct{})
	go func() {
		defer close(held)
		resp, body := post(t, url, "/v1/chat/completions", chatBody("hold", 100), map[string]string{"api-key": gatewayKey})
		assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	}()
	<-region.arrived // the one request in flight

	resp, body := post(t, url, "/v1/chat/completions", chatBody("big", 2*limit), map[string]string{"api-key": gatewayKey})
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "a body over MaxBodyBytes is refused, not shed: %s", body)

	region.releaseAll()
	<-held
}
