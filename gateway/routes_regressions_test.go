package gateway_test

import (
	"net/http"
	"testing"

	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLegacyCompletionsOfDeploymentNamedChat: the gateway routes POST /openai/deployments/chat/completions as
// the legacy completions of deployment "chat" (routeOf), and the client must agree. (Found in review: the
// client's operationOf matched the suffix /chat/completions first, and the region was sent a chat completion.)
func TestLegacyCompletionsOfDeploymentNamedChat(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	resp, answer := post(t, f.url, "/openai/deployments/chat/completions?api-version=2024-10-21",
		`{"model":"gpt-4o","prompt":"hi"}`, map[string]string{"api-key": gatewayKey})
	require.Equal(t, http.StatusOK, resp.StatusCode, answer)
	calls := f.regions[0].Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, "completions", calls[0].Operation, "the route the gateway accepted is legacy completions")
}
