package failover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// longName is a made-up model name of n bytes, distinct per i.
func longName(i, n int) string {
	prefix := fmt.Sprintf("m%04d-", i)
	return prefix + strings.Repeat("x", n-len(prefix))
}

// heapAfterGC is the live heap once the collector has run.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Caller-chosen model names were kept, whatever their length, in each region's per-model state (health, latency,
// quota): megabyte names each left a megabyte behind. A name over the limit is now refused with 400 before any
// state, log line or region sees it, and the heap does not grow.
func TestLongModelNamesAreRefusedBeforeAnyState(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"}, failovertest.WithoutCallLog())
	client := newClient(t, regionsOf(servers...), failover.WithQuotaSteering(true))

	// Warm up what the first requests allocate once (connections, pools), so that the heap compares like with like.
	status, _ := postModel(t, client, "gpt-4o")
	require.Equal(t, http.StatusOK, status)
	before := heapAfterGC()

	const requests, size = 24, 1 << 20
	for i := range requests {
		name := longName(i, size)
		status, body := postModel(t, client, name)
		if !assert.Equal(t, http.StatusBadRequest, status, "request %d", i) {
			continue
		}
		var answer struct {
			Error struct{ Message, Type, Code string }
		}
		require.NoError(t, json.Unmarshal(body, &answer), "an OpenAI-shaped error body")
		assert.Equal(t, "invalid_request_error", answer.Error.Type)
		assert.Contains(t, answer.Error.Message, `"model"`, "the message names the field")
		assert.Contains(t, answer.Error.Message, "256", "and the limit")
		assert.Less(t, len(body), 1024, "the name is not echoed back")
	}
	after := heapAfterGC()
	assert.Less(t, int64(after)-int64(before), int64(requests*size/4),
		"the heap grew by %d bytes after %d requests with %d-byte model names", int64(after)-int64(before), requests, size)
	assert.Equal(t, 1, servers[0].Requests()+servers[1].Requests(), "the regions saw only the warm-up")
	for _, r := range client.Health() {
		for _, m := range r.Models {
			assert.Less(t, len(m.Model), 300, "region %s keeps no long name", r.Region)
		}
	}

	// The typed calls go through the same check: an error that maps to 400 and does not carry the name.
	_, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Model: longName(99, size),
		Messages: hello()})
	require.Error(t, err)
	assert.Equal(t, http.StatusBadRequest, failover.AnswerError(context.Background(), err).Status)
	assert.Less(t, len(err.Error()), 1024, "the error does not carry the name")
	assert.Contains(t, err.Error(), `"model"`)
}

// The name in an Azure path (/openai/deployments/{deployment}/…) is held to the same limit; a name at the limit
// passes.
func TestModelNameLimitAppliesToPathsAndKeepsShortNames(t *testing.T) {
	servers := startRegions(t, []string{"eastus"}, failovertest.WithoutCallLog())
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client := newClient(t, regionsOf(servers...), failover.WithLogger(logger))
	long := longName(0, 300)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost,
		"https://example.invalid/openai/deployments/"+long+"/chat/completions?api-version=2024-10-21",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	resp, err := client.RoundTrip(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.NotContains(t, string(body), long)
	status, _ := postModel(t, client, long)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.NotContains(t, logs.bytes().String(), long, "no log line holds the long name")

	status, _ = postModel(t, client, longName(1, failover.MaxModelNameBytes))
	assert.Equal(t, http.StatusOK, status, "a name of exactly the limit is served")
	assert.Equal(t, 1, servers[0].Requests())
}

// postModel sends a chat completion for model through the client's RoundTrip, and returns the answer's status and
// body (read whole: nothing of the request is kept).
func postModel(t *testing.T, client *failover.Client, model string) (int, []byte) {
	t.Helper()
	var body bytes.Buffer
	body.WriteString(`{"model":`)
	name, _ := json.Marshal(model)
	body.Write(name)
	body.WriteString(`,"messages":[{"role":"user","content":"hi"}]}`)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "https://example.invalid/v1/chat/completions", &body)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}
