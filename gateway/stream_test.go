package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A region that sends one event and then holds the stream until the caller has seen that event: the gateway
// must pass each event on as it comes, not when the stream ends.
func TestStreamEventsAreFlushedAsTheyArrive(t *testing.T) {
	release := make(chan struct{})
	_, url := frontRegion(t, "region-key-1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		chunk := `{"id":"1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}`
		_, _ = w.Write([]byte("data: " + strings.Replace(chunk, "%s", "first", 1) + "\n\n"))
		_ = rc.Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("data: " + strings.Replace(chunk, "%s", "second", 1) + "\n\ndata: [DONE]\n\n"))
	}))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // bounds the test if events are held back
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[]}`))
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	lines := bufio.NewReader(resp.Body)
	first, err := lines.ReadString('\n')
	require.NoError(t, err, "the first event must arrive while the region still holds the stream")
	assert.Contains(t, first, `"first"`)
	close(release)
	var rest strings.Builder
	for {
		line, err := lines.ReadString('\n')
		rest.WriteString(line)
		if err != nil {
			break
		}
	}
	assert.Contains(t, rest.String(), `"second"`)
	assert.True(t, strings.HasSuffix(rest.String(), "data: [DONE]\n\n"), rest.String())
}

// bubbleGateway is startNetFleet with two regions, eastus and westus, and a go-openai client (OpenAI mode) that
// reaches the gateway.
func bubbleGateway(t *testing.T, cfg gateway.Config, opts ...failover.Option) ([]*failovertest.Server, *openai.Client) {
	t.Helper()
	f := startNetFleet(t, []string{"eastus", "westus"}, cfg, opts...)
	c := openai.DefaultConfig(gatewayKey)
	c.BaseURL, c.HTTPClient = f.url+"/v1", f.network.Client()
	return f.regions, openai.NewClientWithConfig(c)
}

func TestRequestTimeoutAnswers504(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, api := bubbleGateway(t, gateway.Config{RequestTimeout: 5 * time.Second})
		servers[0].Script(failovertest.Hang())
		servers[1].Script(failovertest.Hang())
		start := time.Now()
		_, err := api.CreateChatCompletion(t.Context(), chatRequest())
		var apiErr *openai.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, http.StatusGatewayTimeout, apiErr.HTTPStatusCode)
		assert.Equal(t, 5*time.Second, time.Since(start))
	})
}

// The body's read deadline is lifted once the body is in: an answer may take far longer than it.
func TestSlowAnswerOutlastsTheBodyTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, api := bubbleGateway(t, gateway.Config{BodyReadTimeout: time.Second})
		slow := failovertest.Slow(3*time.Second, failovertest.OK("slow but sure"))
		servers[0].Script(slow)
		resp, err := api.CreateChatCompletion(t.Context(), chatRequest())
		require.NoError(t, err)
		assert.Equal(t, "slow but sure", resp.Choices[0].Message.Content)
	})
}

func TestLogsHoldNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{Logger: logger}, failover.WithLogger(logger))
	f.regions[0].Script(failovertest.Unauthorized())
	api := modes[0].api(f.url, gatewayKey)
	_, err := api.CreateChatCompletion(t.Context(), chatRequest())
	require.NoError(t, err)
	_, err = modes[1].api(f.url, "a-wrong-key-77").CreateChatCompletion(t.Context(), chatRequest())
	require.Error(t, err)
	text := logs.String()
	assert.Contains(t, text, `"msg":"aoai-gateway request"`)
	assert.Contains(t, text, `"region":"westus"`)
	for _, secret := range []string{gatewayKey, "a-wrong-key-77", f.regions[0].Key, f.regions[1].Key} {
		assert.NotContains(t, text, secret)
	}
}

func TestSlowBodyAnswers408(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startNetFleet(t, []string{"eastus"}, gateway.Config{BodyReadTimeout: 2 * time.Second})
		network, url, region := f.network, f.url, f.regions[0]

		// The caller sends the start of a body and then nothing more.
		body, write := io.Pipe()
		defer write.Close()
		go func() { _, _ = write.Write([]byte(`{"model":"gpt-4o",`)) }()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v1/chat/completions", body)
		require.NoError(t, err)
		req.Header.Set("api-key", gatewayKey)
		start := time.Now()
		resp, err := network.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode, string(answer))
		assert.Equal(t, 2*time.Second, time.Since(start))
		assert.Contains(t, string(answer), "did not arrive within 2s")
		assert.Zero(t, region.Requests())
	})
}
