package failover

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keyBytesOf is the bytes of the names each of backend i's per-model maps is keyed by, under its mutex.
func keyBytesOf(c *Client, i int) (models, quotas, latencies int) {
	h := &c.engine.backends[i].health
	h.mu.Lock()
	defer h.mu.Unlock()
	return mapKeyBytes(h.models), mapKeyBytes(h.quotas), mapKeyBytes(h.latencies)
}

// Names under MaxModelNameBytes still come in any number: the entry cap alone let 1,024 of them in each map. The
// maps' names are bounded in bytes too, and a real rest still finds room among made-up names' missing marks.
func TestPerModelStateIsBoundedInBytes(t *testing.T) {
	servers, c := latencyClient(t, []string{"eastus", "westus"}, WithQuotaSteering(true), WithMaxWait(0))
	for _, s := range servers {
		s.SetReplier(func(call failovertest.Call) failovertest.Reply {
			if strings.HasPrefix(call.Model, "missing-") {
				return failovertest.DeploymentNotFound()
			}
			return failovertest.Reply{}
		})
	}
	const names = 300 // of 250 bytes each, in each map: 75,000 bytes
	name := func(kind string, i int) string {
		prefix := fmt.Sprintf("%s-%04d-", kind, i)
		return prefix + strings.Repeat("n", 250-len(prefix))
	}
	for i := range names {
		_, err := c.CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Model: name("served", i), Messages: hi()})
		require.NoError(t, err)
		_, err = c.CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Model: name("missing", i), Messages: hi()})
		require.Error(t, err)
	}
	models, quotas, latencies := keyBytesOf(c, 0)
	for what, n := range map[string]int{"rests and missing marks": models, "quotas": quotas, "latencies": latencies} {
		assert.Positive(t, n, "%s are kept", what)
		assert.LessOrEqual(t, n, maxTrackedModelBytes, "%s are bounded in bytes", what)
		assert.Less(t, n, names*250, "%s do not keep every name", what)
	}

	// A real 429 for a model not yet known is recorded: made-up names' missing marks make room for it.
	servers[0].SetReplier(func(failovertest.Call) failovertest.Reply { return failovertest.RateLimited(99 * time.Second) })
	servers[1].SetReplier(func(failovertest.Call) failovertest.Reply { return failovertest.RateLimited(99 * time.Second) })
	_, err := c.ChatCompletion(t.Context(), hi())
	require.Error(t, err)
	h := &c.engine.backends[0].health
	h.mu.Lock()
	r := h.models["gpt-4o"]
	h.mu.Unlock()
	require.NotNil(t, r, "the 429 is recorded")
	assert.Equal(t, http.StatusTooManyRequests, r.status)
}
