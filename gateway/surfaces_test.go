package gateway_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryShapeOfEveryOperation: chat completions, completions and embeddings are served in the OpenAI shape, in
// Azure's v1 shape and in the classic one, over the same client, which maps each model to the region's
// deployment.
func TestEveryShapeOfEveryOperation(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	auth := map[string]string{"api-key": gatewayKey}
	bodies := map[string]string{
		"chat/completions": `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
		"completions":      `{"model":"gpt-4o","prompt":"hi"}`,
		"embeddings":       `{"model":"text-embedding-3-small","input":"hi"}`,
	}
	modelOf := map[string]string{"chat/completions": "gpt-4o", "completions": "gpt-4o", "embeddings": "text-embedding-3-small"}
	deployments := map[string]string{"chat/completions": "chat-eastus", "completions": "chat-eastus", "embeddings": "embed-eastus"}
	n := 0
	for _, prefix := range []string{"/v1/", "/openai/v1/", "/openai/deployments/{d}/"} {
		for op, body := range bodies {
			path := strings.Replace(prefix, "{d}", modelOf[op], 1) + op
			resp, answer := post(t, f.url, path, body, auth)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, answer)
			assert.Equal(t, "eastus", resp.Header.Get("X-Failover-Region"), path)
			assert.True(t, json.Valid([]byte(answer)), path)
			n++
			calls := f.regions[0].Calls()
			require.Len(t, calls, n)
			assert.Equal(t, op, calls[n-1].Operation, path)
			assert.Equal(t, deployments[op], calls[n-1].Deployment, path)
		}
	}
	req, err := http.NewRequest(http.MethodGet, f.url+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	_, metrics := do(t, req)
	assert.Contains(t, metrics, `aoai_gateway_requests_total{api="azure-v1",operation="completions",status="200"} 1`)
	noKeyUpstream(t, f)
}

// TestCallersAPIVersionReachesTheClient: a caller's newer api-version reaches a classic region (the region's own is
// a floor); an older one does not.
func TestCallersAPIVersionReachesTheClient(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	auth := map[string]string{"api-key": gatewayKey}
	body := `{"messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct{ asked, want string }{{"2025-04-01-preview", "2025-04-01-preview"}, {"2023-05-15", "2024-10-21"}} {
		resp, answer := post(t, f.url, "/openai/deployments/gpt-4o/chat/completions?api-version="+tc.asked, body, auth)
		require.Equal(t, http.StatusOK, resp.StatusCode, answer)
		calls := f.regions[0].Calls()
		assert.Equal(t, tc.want, calls[len(calls)-1].APIVersion, tc.asked)
	}
}

// TestThrottledAnswerIsFinal: when every region is throttled, the answer is a 429 with Retry-After and
// x-should-retry: false, so that an SDK does not send the request through every region again.
func TestThrottledAnswerIsFinal(t *testing.T) {
	f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{})
	for _, r := range f.regions {
		r.SetDefault(failovertest.RateLimited(20 * time.Second))
	}
	resp, answer := post(t, f.url, "/openai/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`,
		map[string]string{"Authorization": "Bearer " + gatewayKey})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, answer)
	assert.Equal(t, "false", resp.Header.Get("X-Should-Retry"))
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	assert.InDelta(t, 20, secs, 2)
	assert.Equal(t, "2", resp.Header.Get("X-Failover-Attempts"))
	assert.Empty(t, resp.Header.Get("X-Failover-Region"), "no region's answer is passed on")
	assert.Contains(t, answer, "eastus")
	assert.Contains(t, answer, "westus")
}
