package failover_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An error event may spread its data over several "data:" lines (the SSE specification joins them with "\n",
// as the openai npm package reads them). The engine reads a chat stream's data line by line, and a line that is
// part of such an event is no JSON value by itself: it used to go on to the caller with the key it echoed. Such
// a line is now a malformed event: the stream is cut there and nothing of the event goes on.
func TestSecretInAMultiLineErrorEventIsScrubbed(t *testing.T) {
	key := secrets[0]
	region := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Api-Key") != key {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}]}`+"\n\n")
		_, _ = io.WriteString(w, `data: {"error":{"message":"the key `+key+` is not valid for this deployment",`+"\n")
		_, _ = io.WriteString(w, `data: "type":"server_error","param":null,"code":"500"}}`+"\n\n")
	}))
	t.Cleanup(region.Close)
	client := newClient(t, []failover.Region{{Name: "eastus", Endpoint: region.URL, APIKey: key}})
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "https://example.invalid/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	resp, err := client.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	data, err := io.ReadAll(resp.Body)
	assert.Contains(t, string(data), `"content":"Hi"`, "the stream was served")
	// The event's first line is not JSON by itself: the stream is cut there, and nothing of the event goes on.
	require.ErrorIs(t, err, failover.ErrStreamCut)
	assert.NotContains(t, err.Error(), key)
	assert.NotContains(t, string(data), key, "the key does not")
	assert.NotContains(t, string(data), key[len(key)-12:], "nor any part of it")
}
