package gateway_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// aoai_gateway_stream_cuts_total counts streams the region cut, not streams the caller left: a caller that hangs
// up mid-stream is no fault of the region's, and counting it would page someone for every closed browser tab.
func TestStreamCutsCountOnlyUpstreamCuts(t *testing.T) {
	t.Run("the caller hangs up", func(t *testing.T) {
		upstreamDone := make(chan struct{})
		url, served := loggedStreamRegion(t, func(w http.ResponseWriter, rc *http.ResponseController) {
			_, _ = io.WriteString(w, contentEvent)
			_ = rc.Flush()
			// Events keep coming until the gateway lets go of the stream.
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			defer close(upstreamDone)
			for range 1000 {
				<-tick.C
				if _, err := io.WriteString(w, contentEvent); err != nil || rc.Flush() != nil {
					return
				}
			}
		})
		ctx, hangUp := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[]}`))
		require.NoError(t, err)
		req.Header.Set("api-key", gatewayKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		require.NoError(t, err)
		require.Contains(t, line, "Hello ", "the first event came through")
		hangUp()
		resp.Body.Close()

		select {
		case <-upstreamDone:
		case <-time.After(10 * time.Second):
			t.Fatal("the gateway did not end the upstream stream after its caller hung up")
		}
		assert.Equal(t, "0", streamCuts(t, metricsAfter(t, url, served)), "a stream its caller left is not an upstream cut")
	})
	t.Run("the region cuts the stream", func(t *testing.T) {
		url, served := loggedStreamRegion(t, func(w http.ResponseWriter, rc *http.ResponseController) {
			_, _ = io.WriteString(w, contentEvent)
			_ = rc.Flush()
			if conn, _, err := rc.Hijack(); err == nil {
				conn.Close()
			}
		})
		resp, body := post(t, url, "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[]}`,
			map[string]string{"api-key": gatewayKey})
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assertEventsAreJSON(t, body)
		assert.Equal(t, "1", streamCuts(t, metricsAfter(t, url, served)), "a stream the region cut is counted")
	})
}

// loggedStreamRegion is streamRegion with the gateway's log: served gets a line when a request's handler is done
// with it, its metrics counted.
func loggedStreamRegion(t *testing.T, send func(w http.ResponseWriter, rc *http.ResponseController)) (string, <-chan string) {
	t.Helper()
	region := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		send(w, http.NewResponseController(w))
	}))
	t.Cleanup(region.Close)
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: region.URL, APIKey: "region-key-1"}},
		failover.WithMaxWait(0))
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	served := make(chan string, 16)
	gw, err := gateway.New(client, gateway.Config{Keys: []string{gatewayKey},
		Logger: slog.New(slog.NewTextHandler(lineWriter(served), nil))})
	require.NoError(t, err)
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv.URL, served
}

// lineWriter sends each log line to a channel.
type lineWriter chan<- string

func (w lineWriter) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

// metricsAfter returns the gateway's metrics once the stream's request has been logged, which its handler does
// after counting a cut; it waits at most 10 s.
func metricsAfter(t *testing.T, url string, served <-chan string) string {
	t.Helper()
	select {
	case line := <-served:
		require.Contains(t, line, "/v1/chat/completions")
	case <-time.After(10 * time.Second):
		t.Fatal("the stream's request was not done within 10 s")
	}
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	_, metrics := do(t, req)
	return metrics
}

// streamCuts is the value of aoai_gateway_stream_cuts_total in metrics.
func streamCuts(t *testing.T, metrics string) string {
	t.Helper()
	m := regexp.MustCompile(`\naoai_gateway_stream_cuts_total (\d+)\n`).FindStringSubmatch(metrics)
	require.NotNil(t, m, metrics)
	return m[1]
}
