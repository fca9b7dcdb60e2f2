package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sseEvents splits an event stream the way the SSE specification (and the openai npm package) reads it: events end
// at a blank line, and the data lines of one event are joined with "\n". An unterminated last event is dropped.
func sseEvents(stream string) []string {
	var events, data []string
	for _, line := range strings.Split(strings.ReplaceAll(stream, "\r\n", "\n"), "\n") {
		if line == "" {
			if data != nil {
				events = append(events, strings.Join(data, "\n"))
			}
			data = nil
			continue
		}
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		}
	}
	return events
}

// assertEventsAreJSON checks that every event of a gateway stream is one JSON value (or [DONE]), and that the
// stream ends with the gateway's stream_cut error event.
func assertEventsAreJSON(t *testing.T, stream string) {
	t.Helper()
	events := sseEvents(stream)
	require.NotEmpty(t, events, stream)
	for _, e := range events {
		if e == "[DONE]" {
			continue
		}
		assert.True(t, json.Valid([]byte(e)), "an event whose data is not one JSON value (npm's openai throws a SyntaxError on it):\n%s", e)
	}
	var last struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(events[len(events)-1]), &last)
	assert.Equal(t, "stream_cut", last.Error.Code, "the stream ends with the gateway's own error event: %q", events[len(events)-1])
}

// streamRegion serves one region whose streaming answer is written by send, behind a gateway; it returns the
// gateway's URL.
func streamRegion(t *testing.T, key string, send func(w http.ResponseWriter, rc *http.ResponseController)) string {
	t.Helper()
	_, url := frontRegion(t, key, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		send(w, http.NewResponseController(w))
	}))
	return url
}

const contentEvent = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello "},"finish_reason":null}]}` + "\n\n"

// A stream cut after its first content ends with the gateway's stream_cut event as an event of its own: not
// glued to the region's own error line (handed over without its blank line) or to half a line, which SSE readers
// would join into data that is not JSON (the openai npm package then throws a SyntaxError, losing both messages).
func TestStreamCutEventIsAnEventOfItsOwn(t *testing.T) {
	t.Run("region error event", func(t *testing.T) {
		f := startFleet(t, []string{"eastus"}, gateway.Config{})
		f.regions[0].Script(failovertest.StreamFailure(2)) // after "Hello ", the service's own error event
		resp, body := post(t, f.url, "/v1/chat/completions",
			`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, map[string]string{"api-key": gatewayKey})
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assertEventsAreJSON(t, body)

		// The whole answer was read, so its handler has returned and counted the cut.
		req, _ := http.NewRequest(http.MethodGet, f.url+"/metrics", nil)
		req.Header.Set("api-key", gatewayKey)
		_, metrics := do(t, req)
		assert.Contains(t, metrics, "\naoai_gateway_stream_cuts_total 1\n")
	})
	t.Run("cut mid-line", func(t *testing.T) {
		url := streamRegion(t, "region-key-1", func(w http.ResponseWriter, rc *http.ResponseController) {
			_, _ = io.WriteString(w, contentEvent+`data: {"id":"c1","object":"chat.compl`)
			_ = rc.Flush()
			if conn, _, err := rc.Hijack(); err == nil {
				conn.Close()
			}
		})
		resp, body := post(t, url, "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[]}`,
			map[string]string{"api-key": gatewayKey})
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assertEventsAreJSON(t, body)
	})
}

// noFlushWriter is a ResponseWriter as many middlewares wrap it: it offers neither Flush nor Unwrap.
type noFlushWriter struct{ http.ResponseWriter }

// Behind a ResponseWriter that cannot flush (a middleware's wrapper without Unwrap), a stream is delayed, never
// truncated into a stream that looks complete.
func TestStreamBehindWriterWithoutFlush(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.gateway.ServeHTTP(noFlushWriter{w}, r)
	}))
	t.Cleanup(srv.Close)
	req := chatRequest()
	req.Stream = true
	stream, err := modes[1].api(srv.URL, gatewayKey).CreateChatCompletionStream(t.Context(), req)
	require.NoError(t, err)
	defer stream.Close()
	assert.Equal(t, "Hello from eastus.", streamText(t, stream), "the whole answer, or an error; never a silent truncation")
}

// A body's model becomes a path segment of an Azure URL: ".." must never climb out of /openai/deployments/ with
// the region's key, which a normalising front end (APIM, Front Door, nginx) would resolve.
func TestBodyModelCannotLeaveTheDeploymentsPath(t *testing.T) {
	var mu sync.Mutex
	var uris []string
	_, url := frontRegion(t, "region-key-1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		uris = append(uris, r.RequestURI)
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"reached"},"finish_reason":"stop"}]}`)
	}))

	for _, path := range []string{"/v1/chat/completions", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"} {
		resp, answer := post(t, url, path, `{"model":"..","messages":[]}`, map[string]string{"api-key": gatewayKey})
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", path, answer)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, uri := range uris {
		assert.NotContains(t, uri, "/../", "a dot segment went upstream, with the region's key")
	}
}

// A region's key echoed in an error event mid-stream is scrubbed, as in error answers and opening events: through
// the gateway, any holder of a gateway key would see it.
func TestMidStreamErrorEventIsScrubbed(t *testing.T) {
	const regionKey = "region-secret-4e1f0b9c27"
	url := streamRegion(t, regionKey, func(w http.ResponseWriter, rc *http.ResponseController) {
		_, _ = io.WriteString(w, contentEvent)
		_ = rc.Flush()
		_, _ = io.WriteString(w, `data: {"error":{"message":"key `+regionKey+` is over quota","type":"server_error","param":null,"code":null}}`+"\n\n")
	})
	resp, body := post(t, url, "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[]}`,
		map[string]string{"api-key": gatewayKey})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, "stream_cut")
	assert.NotContains(t, body, regionKey, "a region's key in the gateway's answer")
}

// BodyReadTimeout bounds every body, also one the gateway refuses unread (401 here), which net/http drains after
// the answer: a caller without a key must not hold a connection by trickling a body.
func TestRefusedRequestsBodyIsBoundedToo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startNetFleet(t, []string{"eastus"}, gateway.Config{BodyReadTimeout: 2 * time.Second})
		network, url := f.network, f.url

		body, write := io.Pipe()
		defer write.Close()
		go func() { _, _ = write.Write([]byte(`{"model":`)) }() // then nothing more
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		// The caller gives up after a minute: it stops sending, so that its transport can end the request.
		stopSending := context.AfterFunc(ctx, func() { write.CloseWithError(ctx.Err()) })
		defer stopSending()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", body)
		require.NoError(t, err)
		req.ContentLength = 1000 // declared, never sent; no key
		start := time.Now()
		resp, err := network.Client().Do(req)
		require.NoError(t, err, "no answer to a caller without a key after %s, though BodyReadTimeout is 2s", time.Since(start))
		defer resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.LessOrEqual(t, time.Since(start), 2*time.Second)
	})
}

// /metrics is rendered under the metrics lock and written after it: a scraper that stops reading must not stall
// every request, which records its metrics under that lock. The in-memory network has no buffers, so a write
// under the lock would block at once.
func TestSlowMetricsReaderDoesNotStallRequests(t *testing.T) {
	names := make([]string, 12)
	for i := range names {
		names[i] = "region-" + strings.Repeat("x", i+1)
	}
	f := startNetFleet(t, names, gateway.Config{}, failover.WithMaxWait(0))
	for _, s := range f.regions[:11] {
		s.Script(failovertest.InternalError())
	}
	network, url := f.network, f.url
	chat := func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[]}`))
		require.NoError(t, err)
		req.Header.Set("api-key", gatewayKey)
		resp, err := network.Client().Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		return string(data), err
	}
	// One request tried every region: attempts, rests and a latency histogram for each.
	answer, err := chat(t.Context())
	require.NoError(t, err)
	require.Contains(t, answer, "[DONE]")

	// A scraper that takes the answer's headers and reads no further. The headers leave the gateway with the
	// first spill of metrics.write, under the lock; the rest of the answer waits for a reader.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	scrape, err := network.Client().Do(req)
	require.NoError(t, err)
	defer scrape.Body.Close() // ends the scrape's connection, and with it the wait

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // bounds the test if the stream never ends
	defer cancel()
	answer, err = chat(ctx)
	require.NoError(t, err, "a stream never ended while a /metrics reader was slow")
	assert.Contains(t, answer, "[DONE]")
}
