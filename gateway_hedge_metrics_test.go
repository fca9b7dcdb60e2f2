package failover_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGatewayHedgeWinIsNoFailover: aoai_gateway_failovers_total{region} counts "requests served after another
// region failed them" (README). A hedge that wins is served after the attempt it hedged, which lost a race and
// failed nothing, so it is not counted.
func TestGatewayHedgeWinIsNoFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
		r.regions[0].Script(failovertest.Reply{Delay: 5 * time.Second})
		g, err := gateway.New(r.client, gateway.Config{AllowNoAuth: true})
		require.NoError(t, err)

		req := httptest.NewRequest(http.MethodPost, "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
			strings.NewReader(`{"messages":[{"role":"user","content":"Say hello."}]}`))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		require.Equal(t, "westus", w.Header().Get("X-Failover-Region"))

		m := httptest.NewRecorder()
		g.ServeHTTP(m, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		metrics := m.Body.String()
		require.Contains(t, metrics, `aoai_gateway_attempts_total{region="eastus",outcome="lost",status="0"} 1`)
		assert.NotContains(t, metrics, `aoai_gateway_failovers_total{region="westus"} 1`,
			"no region failed the request: eastus lost a race")
	})
}
