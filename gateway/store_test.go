package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	"github.com/aoai-failover/failover/storetest"
)

// TestStoreStateIsReported: /status and /metrics say whether the store the gateway shares through answers.
func TestStoreStateIsReported(t *testing.T) {
	store := new(storetest.Memory)
	f := startFleet(t, []string{"eastus"}, gateway.Config{}, failover.WithStore(store),
		failover.WithStoreTiming(failover.StoreTiming{Refresh: -1, Retry: time.Hour}))

	status := func() *struct{ Reachable bool } {
		req, err := http.NewRequest(http.MethodGet, f.url+"/status", nil)
		require.NoError(t, err)
		req.Header.Set("api-key", gatewayKey)
		resp, body := do(t, req)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		var s struct {
			Store *struct{ Reachable bool } `json:"store"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &s), body)
		return s.Store
	}
	metrics := func() string {
		req, err := http.NewRequest(http.MethodGet, f.url+"/metrics", nil)
		require.NoError(t, err)
		req.Header.Set("api-key", gatewayKey)
		resp, body := do(t, req)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		return body
	}

	resp, body := post(t, f.url, "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"Authorization": "Bearer " + gatewayKey})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.NotNil(t, status())
	assert.True(t, status().Reachable)
	assert.Contains(t, metrics(), "\naoai_gateway_store_reachable 1\n")

	store.SetDown(true)
	resp, body = post(t, f.url, "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"Authorization": "Bearer " + gatewayKey})
	require.Equal(t, http.StatusOK, resp.StatusCode, "a store that is down fails no request: %s", body)
	assert.False(t, status().Reachable)
	assert.Contains(t, metrics(), "\naoai_gateway_store_reachable 0\n")
}

func TestNoStoreNoStoreState(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	req, err := http.NewRequest(http.MethodGet, f.url+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	_, body := do(t, req)
	assert.NotContains(t, body, "store_reachable")
	req, err = http.NewRequest(http.MethodGet, f.url+"/status", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	_, body = do(t, req)
	assert.NotContains(t, body, `"store"`)
}

// TestErrorAnswerCountsAttempts: an answer for a request no region served says how many were asked.
func TestErrorAnswerCountsAttempts(t *testing.T) {
	f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{})
	for _, r := range f.regions {
		r.SetDefault(failovertest.InternalError())
	}
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	auth := map[string]string{"Authorization": "Bearer " + gatewayKey}
	resp, text := post(t, f.url, "/v1/chat/completions", body, auth)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "both failed and rest a second: %s", text)
	assert.Equal(t, "2", resp.Header.Get("X-Failover-Attempts"))
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Empty(t, resp.Header.Get("X-Failover-Region"), "no region's answer")
	resp, text = post(t, f.url, "/v1/chat/completions", body, auth)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "both rest now: %s", text)
	assert.Equal(t, "0", resp.Header.Get("X-Failover-Attempts"), "every region rested: none was asked")
}
