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

// TestGarbageAfterDoneIsNotACut: a stream is whole at data: [DONE]; a malformed line a server sends after it
// does not turn it into a cut (a caller reading to the end of the body gets no error).
func TestGarbageAfterDoneIsNotACut(t *testing.T) {
	data, err := streamFrom(t, "k", `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}`+
		"\n\ndata: [DONE]\n\ndata: {\"trailing\n\n")
	require.NoError(t, err)
	assert.Contains(t, data, "[DONE]")
}

// streamFrom serves sse as a streamed chat answer from a region with key, sends a streamed chat request to it
// through a client as its transport, and returns what the caller reads of the body, with the read's error.
func streamFrom(t *testing.T, key, sse string) (string, error) {
	t.Helper()
	region := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Api-Key") != key {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, sse)
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
	return string(data), err
}
