package failover_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aoai-failover/failover"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAnswerBudget: under WithAnswerBudget the client asks for the bytes of an answer before it holds them (its
// declared length up front, or its buffer as it grows); refused, the request ends with ErrAnswerBudget (over
// HTTP: 503 with Retry-After) and the region, which did nothing wrong, does not rest.
func TestAnswerBudget(t *testing.T) {
	const size = 1 << 20
	answer := `{"id":"1","object":"list","data":[{"object":"embedding","index":0,"embedding":[]}],"model":"m","pad":"` +
		strings.Repeat("x", size) + `"}`
	region := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("X-Test-Chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
		}
		for i := 0; i < len(answer); i += 32 << 10 {
			_, _ = w.Write([]byte(answer[i:min(i+32<<10, len(answer))]))
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(region.Close)
	client := newClient(t, []failover.Region{{Name: "eastus", Endpoint: region.URL, APIKey: "k"}})
	embed := func(ctx context.Context) error {
		_, err := client.CreateEmbeddings(ctx, openai.EmbeddingRequest{Model: "text-embedding-3-small", Input: []string{"a"}})
		return err
	}

	var granted atomic.Int64
	generous := failover.WithAnswerBudget(t.Context(), func(n int64) bool { granted.Add(n); return true })
	require.NoError(t, embed(generous))
	assert.GreaterOrEqual(t, granted.Load(), int64(len(answer)), "the answer's bytes were asked for")
	assert.Less(t, granted.Load(), int64(len(answer))+64<<10, "and not much more: its declared length")

	var asked atomic.Int64
	tight := failover.WithAnswerBudget(t.Context(), func(n int64) bool { asked.Add(n); return false })
	err := embed(tight)
	require.ErrorIs(t, err, failover.ErrAnswerBudget)
	assert.NotErrorAs(t, err, new(*failover.ExhaustedError), "no region failed")
	assert.Positive(t, asked.Load())

	status := func(ctx context.Context, chunked bool) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://example.invalid/v1/embeddings",
			strings.NewReader(`{"model":"text-embedding-3-small","input":"a"}`))
		require.NoError(t, err)
		if chunked {
			req.Header.Set("X-Test-Chunked", "1") // the caller's headers go upstream
		}
		resp, err := client.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			assert.NotEmpty(t, resp.Header.Get("Retry-After"))
		}
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusServiceUnavailable, status(tight, false))

	// Without a length, the buffer is asked for as it grows: piece by piece, and a budget of 256 KiB refuses the
	// 1 MiB answer.
	var calls atomic.Int64
	counted := failover.WithAnswerBudget(t.Context(), func(n int64) bool { calls.Add(1); return true })
	require.Equal(t, http.StatusOK, status(counted, true))
	assert.Greater(t, calls.Load(), int64(5), "a growing buffer is asked for at each growth")
	var left atomic.Int64
	left.Store(256 << 10)
	small := failover.WithAnswerBudget(t.Context(), func(n int64) bool { return left.Add(-n) >= 0 })
	assert.Equal(t, http.StatusServiceUnavailable, status(small, true))

	require.NoError(t, embed(t.Context()), "the region does not rest for the caller's budget")

	// A call pinned to one region (a file listing) is counted the same way.
	files := func(ctx context.Context) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://example.invalid/v1/files", nil)
		require.NoError(t, err)
		resp, err := client.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusServiceUnavailable, files(tight))
	assert.Equal(t, http.StatusOK, files(t.Context()), "and the region does not rest for it")
}
