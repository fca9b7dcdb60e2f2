package gateway_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer that the gateway's and the client's loggers may write from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A caller's model name of megabytes used to be served, kept in every region's state and written into the log
// lines of the client under the gateway (its attempts' deployment). It is refused with 400 before any of that, on
// every surface, and no log line holds it.
func TestGatewayRefusesLongModelNamesWithoutLoggingThem(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := startFleet(t, []string{"eastus"}, gateway.Config{Logger: logger}, failover.WithLogger(logger))
	long := "gpt-4o" + strings.Repeat("x", 1<<20)
	body, err := json.Marshal(map[string]any{"model": long, "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	require.NoError(t, err)
	auth := map[string]string{"api-key": gatewayKey}
	for _, path := range []string{"/v1/chat/completions", "/openai/v1/chat/completions", "/openai/v1/responses"} {
		resp, text := post(t, f.url, path, string(body), auth)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, path)
		var answer struct {
			Error struct{ Message, Type, Code string }
		}
		require.NoError(t, json.Unmarshal([]byte(text), &answer), path)
		assert.Equal(t, "invalid_request_error", answer.Error.Type, path)
		assert.Contains(t, answer.Error.Message, `"model"`, path)
		assert.Contains(t, answer.Error.Message, "256", path)
		assert.Less(t, len(text), 1024, "%s: the name is not echoed back", path)
	}
	assert.Zero(t, f.regions[0].Requests(), "no region saw the name")
	out := logs.String()
	assert.Contains(t, out, "aoai-gateway request", "the requests were logged")
	assert.NotContains(t, out, strings.Repeat("x", 256), "no log line holds the name")
	assert.Less(t, len(out), 8<<10, "the log lines are short")
}
