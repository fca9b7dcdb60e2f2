package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openai-go's azure package, as a user of Azure OpenAI has it (api-key header, /openai/deployments/{model}/…
// paths, a dated api-version), with the failover client as its HTTP transport.

// callerAPIVersion is newer than a classic region's default (failover.DefaultAPIVersion), so it must reach
// the region: the region's own api-version is a floor, not a ceiling.
const callerAPIVersion = "2025-04-01-preview"

// TestAzureSDKFailsOverThroughTheRoundTripper: each operation (chat, streamed chat, completions, embeddings)
// from the azure package goes to the second region when the first is throttled, with the region's own key and
// deployment, and the caller's newer api-version.
func TestAzureSDKFailsOverThroughTheRoundTripper(t *testing.T) {
	for _, op := range operations {
		t.Run(op.name, func(t *testing.T) {
			servers := startRegions(t, "eastus", "westus")
			servers[0].Script(failovertest.RateLimited(30 * time.Second))
			fc := newFailover(t, azureRegions(servers...))

			answer, err := op.call(t, t.Context(), azureSDK(fc, callerAPIVersion))
			require.NoError(t, err)
			assert.Equal(t, wantAnswer(op, servers[1]), answer, "the second region wrote the answer")

			assert.Equal(t, []int{http.StatusTooManyRequests}, statuses(servers[0]))
			require.Equal(t, []int{http.StatusOK}, statuses(servers[1]))
			for i, s := range servers {
				c := s.Calls()[0]
				assert.False(t, c.V1)
				assert.Equal(t, op.operation, c.Operation)
				assert.Equal(t, op.deployment(s.Name), c.Deployment,
					"the azure package puts the model in the path; the client maps it to region %d's deployment", i)
				assert.Equal(t, callerAPIVersion, c.APIVersion, "the caller's newer api-version at %s", s.Name)
				assert.Equal(t, op.name == "stream", c.Stream)
				assert.Equal(t, s.Key, c.Header.Get("Api-Key"), "the region's own key at %s", s.Name)
				assertOnlyOwnKey(t, s)
			}
		})
	}
}

// TestAzureSDKAPIVersion: a classic region gets the newer of its own api-version and the caller's; a v1 region
// gets no dated api-version at all (its surface refuses one), whatever the caller's.
func TestAzureSDKAPIVersion(t *testing.T) {
	cases := []struct {
		name, caller, wantClassic string
	}{
		{"caller newer", callerAPIVersion, callerAPIVersion},
		{"caller older", "2024-02-01", failover.DefaultAPIVersion},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			servers := startRegions(t, "eastus", "westus")
			servers[0].Script(failovertest.RateLimited(30 * time.Second))
			v1 := azureRegion(servers[1])
			v1.Endpoint = servers[1].V1URL
			fc := newFailover(t, []failover.Region{azureRegion(servers[0]), v1})

			answer, err := chat(t, t.Context(), azureSDK(fc, tc.caller))
			require.NoError(t, err)
			assert.Equal(t, greeting(servers[1]), answer)

			require.Len(t, servers[0].Calls(), 1)
			classic := servers[0].Calls()[0]
			assert.False(t, classic.V1)
			assert.Equal(t, tc.wantClassic, classic.APIVersion)
			require.Len(t, servers[1].Calls(), 1)
			v1Call := servers[1].Calls()[0]
			assert.True(t, v1Call.V1, "the v1 region is reached on its v1 surface")
			assert.Empty(t, v1Call.APIVersion, "no dated api-version on the v1 surface")
			assert.Equal(t, chatDeployment("westus"), v1Call.Model, "the v1 surface names the deployment in the body")
			assertOnlyOwnKey(t, servers[0])
			assertOnlyOwnKey(t, servers[1])
		})
	}
}

// TestAzurePackageBypassesTheRoundTripperOnPlaintextLoopback documents why the azure package is given an https
// logical endpoint (logicalAzureEndpoint) in front of the failover client. Given a plaintext loopback endpoint
// with azure.WithUnsafeAllowHTTP, openai-go v3's azure package sends the request on a direct loopback transport
// of its own ("Plaintext loopback requests always use a direct connection and bypass configured proxies and
// custom RoundTrippers", azure.go): the failover client never sees it, and the caller's key goes to that address.
// Without WithUnsafeAllowHTTP it refuses plain http before sending anything.
func TestAzurePackageBypassesTheRoundTripperOnPlaintextLoopback(t *testing.T) {
	servers := startRegions(t, "eastus", "westus")
	// The endpoint the caller gives: a loopback http server (here the first fake region, which knows nothing of
	// callerKey). The failover client's own region is the second.
	rt := &countingTransport{next: newFailover(t, azureRegions(servers[1]))}

	t.Run("WithUnsafeAllowHTTP", func(t *testing.T) {
		client := openai.NewClient(
			azure.WithEndpoint(servers[0].URL, failover.DefaultAPIVersion),
			azure.WithAPIKey(callerKey),
			azure.WithUnsafeAllowHTTP(),
			option.WithHTTPClient(&http.Client{Transport: rt}),
			option.WithMaxRetries(0),
		)
		_, err := chat(t, t.Context(), client)
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, http.StatusUnauthorized, apiErr.StatusCode, "the caller's key, at the caller's endpoint")

		assert.Zero(t, rt.calls.Load(), "the custom RoundTripper was bypassed")
		assert.Zero(t, servers[1].Requests(), "the failover client's region was never asked")
		require.Len(t, servers[0].Calls(), 1, "the request went straight to the endpoint")
		assert.Equal(t, callerKey, servers[0].Calls()[0].Header.Get("Api-Key"))
	})

	t.Run("without WithUnsafeAllowHTTP", func(t *testing.T) {
		before := servers[0].Requests()
		client := openai.NewClient(
			azure.WithEndpoint(servers[0].URL, failover.DefaultAPIVersion),
			azure.WithAPIKey(callerKey),
			option.WithHTTPClient(&http.Client{Transport: rt}),
		)
		_, err := chat(t, t.Context(), client)
		require.ErrorContains(t, err, "require HTTPS")
		assert.Zero(t, rt.calls.Load())
		assert.Equal(t, before, servers[0].Requests(), "nothing was sent")
	})

	t.Run("https logical endpoint", func(t *testing.T) {
		answer, err := chat(t, t.Context(), azureSDK(rt, failover.DefaultAPIVersion))
		require.NoError(t, err)
		assert.Equal(t, greeting(servers[1]), answer)
		assert.Equal(t, int64(1), rt.calls.Load(), "through the failover client")
		assertOnlyOwnKey(t, servers[1])
	})
}

// TestAzureSDKGetsOneAnswerWhenEveryRegionIsThrottled: as with plain openai-go, the azure package gets one 429
// that says not to retry, and obeys it.
func TestAzureSDKGetsOneAnswerWhenEveryRegionIsThrottled(t *testing.T) {
	servers := startRegions(t, "eastus", "westus")
	for _, s := range servers {
		s.SetDefault(failovertest.RateLimited(30 * time.Second))
	}
	rt := &countingTransport{next: newFailover(t, azureRegions(servers...))}

	_, err := chat(t, t.Context(), azureSDK(rt, callerAPIVersion))
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusTooManyRequests, apiErr.StatusCode)
	assert.Equal(t, "false", apiErr.Response.Header.Get("X-Should-Retry"))
	assert.NotEmpty(t, apiErr.Response.Header.Get("Retry-After"))
	assert.Equal(t, int64(1), rt.calls.Load(), "the SDK did not retry")
	for _, s := range servers {
		assert.Equal(t, 1, s.Requests(), "%s was asked once", s.Name)
	}
}
