package main

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Plain openai-go, as a user of the OpenAI API has it, with the failover client as its HTTP transport.

// TestSDKFailsOverThroughTheRoundTripper: each operation (chat, streamed chat, completions, embeddings) goes to
// the second region when the first is throttled, under that region's deployment name and with its key.
func TestSDKFailsOverThroughTheRoundTripper(t *testing.T) {
	for _, op := range operations {
		t.Run(op.name, func(t *testing.T) {
			servers := startRegions(t, "eastus", "westus")
			servers[0].Script(failovertest.RateLimited(30 * time.Second))
			fc := newFailover(t, azureRegions(servers...))

			answer, err := op.call(t, t.Context(), plainSDK(fc))
			require.NoError(t, err)
			assert.Equal(t, wantAnswer(op, servers[1]), answer, "the second region wrote the answer")

			assert.Equal(t, []int{http.StatusTooManyRequests}, statuses(servers[0]))
			require.Equal(t, []int{http.StatusOK}, statuses(servers[1]))
			served := servers[1].Calls()[0]
			assert.False(t, served.V1, "a classic region is reached on the classic surface")
			assert.Equal(t, op.operation, served.Operation)
			assert.Equal(t, op.deployment("westus"), served.Deployment, "the model is mapped to the region's deployment")
			assert.Equal(t, op.name == "stream", served.Stream)
			assert.Equal(t, servers[1].Key, served.Header.Get("Api-Key"), "the region's own key")
			for _, s := range servers {
				assertOnlyOwnKey(t, s)
			}
		})
	}
}

// TestSDKGetsOneAnswerWhenEveryRegionIsFailing: when no region can serve, the SDK gets one error answer, which
// tells it not to retry, and obeys: each region is asked once, and the SDK hands its HTTP client the request
// once, though its default of two retries is left on. 429 when the regions are throttled, 503 when they fail.
func TestSDKGetsOneAnswerWhenEveryRegionIsFailing(t *testing.T) {
	cases := []struct {
		name   string
		reply  failovertest.Reply
		opts   []failover.Option
		status int
	}{
		// Retry-After: 30 is beyond the client's default wait (10 s), so it answers at once.
		{"throttled", failovertest.RateLimited(30 * time.Second), nil, http.StatusTooManyRequests},
		// A 500's rest (about 1 s) is within the default wait, which the client would spend and then try again;
		// WithMaxWait(0) makes it answer at once.
		{"failing", failovertest.InternalError(), []failover.Option{failover.WithMaxWait(0)}, http.StatusServiceUnavailable},
	}
	for _, tc := range cases {
		for _, op := range operations {
			t.Run(tc.name+"/"+op.name, func(t *testing.T) {
				servers := startRegions(t, "eastus", "westus")
				for _, s := range servers {
					s.SetDefault(tc.reply)
				}
				rt := &countingTransport{next: newFailover(t, azureRegions(servers...), tc.opts...)}

				_, err := op.call(t, t.Context(), plainSDK(rt))
				var apiErr *openai.Error
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, tc.status, apiErr.StatusCode)
				assert.Equal(t, int64(1), rt.calls.Load(), "the SDK did not retry")
				for _, s := range servers {
					assert.Equal(t, 1, s.Requests(), "%s was asked once", s.Name)
					assertOnlyOwnKey(t, s)
				}
				require.NotNil(t, apiErr.Response)
				assert.Equal(t, "false", apiErr.Response.Header.Get("X-Should-Retry"))
				retryAfter, convErr := strconv.Atoi(apiErr.Response.Header.Get("Retry-After"))
				require.NoError(t, convErr, "Retry-After in whole seconds")
				assert.Positive(t, retryAfter)
				if tc.status == http.StatusTooManyRequests {
					assert.LessOrEqual(t, retryAfter, 30, "when the first region's quota comes back")
				}
				assert.Contains(t, apiErr.Message, "eastus", "the error names the regions tried")
				assert.Contains(t, apiErr.Message, "westus", "the error names the regions tried")
			})
		}
	}
}

// TestSDKFineTuningIsNotRouted: fine-tuning is not an operation the failover client routes: it answers 404
// itself, at once, without asking a region, and the SDK does not retry it.
func TestSDKFineTuningIsNotRouted(t *testing.T) {
	servers := startRegions(t, "eastus")
	rt := &countingTransport{next: newFailover(t, azureRegions(servers...))}
	client := plainSDK(rt)

	_, err := client.FineTuning.Jobs.Get(t.Context(), "ftjob-1")
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	assert.Equal(t, "false", apiErr.Response.Header.Get("X-Should-Retry"))
	assert.Equal(t, int64(1), rt.calls.Load(), "the SDK did not retry")
	assert.Zero(t, servers[0].Requests(), "no region was asked")
}

// TestSDKModelNoRegionHas: regions that declare their deployments never receive a request for another model; the
// caller gets 404 at once, and the SDK does not retry it.
func TestSDKModelNoRegionHas(t *testing.T) {
	servers := startRegions(t, "eastus", "westus")
	rt := &countingTransport{next: newFailover(t, azureRegions(servers...))}
	params := chatParams()
	params.Model = "gpt-no-such-model"

	client := plainSDK(rt)
	_, err := client.Chat.Completions.New(t.Context(), params)
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	assert.Equal(t, "false", apiErr.Response.Header.Get("X-Should-Retry"))
	assert.Equal(t, int64(1), rt.calls.Load(), "the SDK did not retry")
	for _, s := range servers {
		assert.Zero(t, s.Requests(), "%s was not asked", s.Name)
	}
}

// TestSDKNeedsNoKeyNorBaseURL backs main.go's comment: openai-go needs neither a key nor a base URL in front of
// the failover client, and a key it reads from OPENAI_API_KEY never reaches a region.
func TestSDKNeedsNoKeyNorBaseURL(t *testing.T) {
	for _, envKey := range []string{"", "sk-from-the-environment"} {
		t.Run("OPENAI_API_KEY="+envKey, func(t *testing.T) {
			if envKey != "" {
				t.Setenv("OPENAI_API_KEY", envKey)
			}
			servers := startRegions(t, "eastus")
			fc := newFailover(t, azureRegions(servers...))
			client := openai.NewClient(option.WithHTTPClient(&http.Client{Transport: fc}))

			answer, err := chat(t, t.Context(), client)
			require.NoError(t, err)
			assert.Equal(t, greeting(servers[0]), answer)
			require.Len(t, servers[0].Calls(), 1)
			assert.Empty(t, servers[0].Calls()[0].Header.Get("Authorization"))
			if envKey != "" {
				assertOnlyOwnKey(t, servers[0], envKey)
			}
		})
	}
}
