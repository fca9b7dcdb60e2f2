package failover_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnderAnAzureSDKPipeline: an Azure SDK pipeline (azcore) takes the client as its transport. Its own retry
// policy retries 429 and 5xx whatever x-should-retry says, so a caller turns it off (MaxRetries < 0): the
// client has tried every region already.
func TestUnderAnAzureSDKPipeline(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.RateLimited(30 * time.Second))
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	pl := runtime.NewPipeline("failover-test", "v0", runtime.PipelineOptions{}, &policy.ClientOptions{
		Transport: client,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	})
	send := func() *http.Response {
		req, err := runtime.NewRequest(t.Context(), http.MethodPost,
			"https://caller.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21")
		require.NoError(t, err)
		require.NoError(t, req.SetBody(streaming.NopCloser(strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`)), "application/json"))
		resp, err := pl.Do(req)
		require.NoError(t, err)
		readAll(t, resp)
		return resp
	}
	resp := send()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "westus", resp.Header.Get("X-Ms-Region"))

	servers[1].SetDefault(failovertest.RateLimited(30 * time.Second))
	resp = send()
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.True(t, runtime.HasStatusCode(resp, http.StatusTooManyRequests))
	assert.Equal(t, 1, servers[0].Requests(), "eastus rests: passed over")
	assert.Equal(t, 2, servers[1].Requests(), "one pass, not the pipeline's retries")
	var respErr *azcore.ResponseError
	assert.ErrorAs(t, runtime.NewResponseError(resp), &respErr)
}
