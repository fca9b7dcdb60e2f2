package main

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDrainWaitsForAStream shows that a stream in flight at SIGTERM is passed to its end before run returns,
// though the gateway took its connection over from the server (gateway.Listener), whose Shutdown does not see it.
func TestDrainWaitsForAStream(t *testing.T) {
	isolate(t)
	const chunk = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}` + "\n\n"
	release := make(chan struct{})
	region := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, chunk)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
			_, _ = io.WriteString(w, chunk+"data: [DONE]\n\n")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(region.Close)
	const gatewayKey = "gw-secret-5c1e77ab20"
	setEnv(t, map[string]string{"AZURE_OPENAI_ENDPOINT_1": region.URL, "AZURE_OPENAI_API_KEY_1": "region-key-1",
		"AZURE_OPENAI_REGION_1": "eastus"})
	t.Setenv(EnvGatewayKeys, gatewayKey)
	g := startGateway(t, "-addr", "127.0.0.1:0")
	var once bool
	t.Cleanup(func() {
		if !once {
			close(release)
		}
	})

	req, err := http.NewRequest(http.MethodPost, "http://"+g.addr+chatPath,
		strings.NewReader(`{"stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := newClient(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	in := bufio.NewReader(resp.Body)
	first, err := in.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, strings.SplitAfter(chunk, "\n")[0], first)

	g.cancel() // what SIGTERM does
	g.log.waitFor(t, "aoai-gateway draining")
	waitRefused(t, g.addr)
	// The server's Shutdown, which does not see the stream, returns within milliseconds (it looks at its
	// connections every 1 ms at first); run must not return with it.
	select {
	case err := <-g.done:
		t.Fatalf("run returned with a stream in flight: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	once = true
	close(release)
	rest, err := io.ReadAll(in)
	require.NoError(t, err)
	assert.Equal(t, "\n"+chunk+"data: [DONE]\n\n", string(rest))
	require.NoError(t, g.stop(t))
	log := g.log.String()
	assert.Contains(t, log, "aoai-gateway stopped")
	assert.NotContains(t, log, "drain timed out")
}
