package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/openai/openai-go/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// One list of every kind of region: a classic Azure region, an Azure region on its v1 surface and an
// OpenAI-compatible API, each reached in its own shape whatever shape the SDK wrote the request in.

// openAIModels is what the OpenAI-compatible region calls the test's models: a dated snapshot, as a provider
// names them, so a request that arrives with the bare name is refused (model_not_found).
var openAIModels = map[string]string{chatModel: "gpt-4o-2024-08-06", embedModel: "text-embedding-3-small-v2"}

// mixedFleet is a classic region and a v1 region, both throttled once, then an OpenAI-compatible one, and a
// failover client over the three in that order.
type mixedFleet struct {
	classic, v1, openai *failovertest.Server
	client              *failover.Client
}

// startMixedFleet starts the three fakes, the first two failing their first request in different ways (429 and
// 500), and the failover client over them.
func startMixedFleet(t *testing.T) *mixedFleet {
	t.Helper()
	servers := startRegions(t, "eastus", "westus")
	f := &mixedFleet{classic: servers[0], v1: servers[1],
		openai: failovertest.NewOpenAI(failovertest.WithDeployments(openAIModels[chatModel], openAIModels[embedModel]))}
	t.Cleanup(f.openai.Close)
	f.classic.Script(failovertest.RateLimited(30 * time.Second))
	f.v1.Script(failovertest.InternalError())
	v1 := azureRegion(f.v1)
	v1.Endpoint = f.v1.V1URL
	f.client = newFailover(t, []failover.Region{
		azureRegion(f.classic),
		v1,
		{Name: "openai", Kind: failover.KindOpenAI, Endpoint: f.openai.URL, APIKey: f.openai.Key, Deployments: openAIModels},
	})
	return f
}

// TestMixedKindsFailOver: each operation, from plain openai-go and from the azure package, goes through all three
// kinds: the classic region on its classic surface (deployment in the path, api-key, dated api-version), the v1
// region on its v1 surface (deployment in the body, no dated api-version), and the OpenAI-compatible one with its
// own model name and a Bearer key, which serves it.
func TestMixedKindsFailOver(t *testing.T) {
	sdks := []struct {
		name string
		new  func(fc *failover.Client) openai.Client
	}{
		{"openai", func(fc *failover.Client) openai.Client { return plainSDK(fc) }},
		{"azure", func(fc *failover.Client) openai.Client { return azureSDK(fc, failover.DefaultAPIVersion) }},
	}
	for _, sdk := range sdks {
		for _, op := range operations {
			t.Run(sdk.name+"/"+op.name, func(t *testing.T) {
				f := startMixedFleet(t)

				answer, err := op.call(t, t.Context(), sdk.new(f.client))
				require.NoError(t, err)
				assert.Equal(t, wantAnswer(op, f.openai), answer, "the OpenAI-compatible region wrote the answer")

				require.Equal(t, []int{http.StatusTooManyRequests}, statuses(f.classic))
				classic := f.classic.Calls()[0]
				assert.False(t, classic.V1)
				assert.Equal(t, op.operation, classic.Operation)
				assert.Equal(t, op.deployment(f.classic.Name), classic.Deployment, "the deployment in the path")
				assert.Equal(t, failover.DefaultAPIVersion, classic.APIVersion)
				assert.Equal(t, f.classic.Key, classic.Header.Get("Api-Key"))

				require.Equal(t, []int{http.StatusInternalServerError}, statuses(f.v1))
				v1 := f.v1.Calls()[0]
				assert.True(t, v1.V1)
				assert.Equal(t, op.operation, v1.Operation)
				assert.Equal(t, op.deployment(f.v1.Name), v1.Model, "the deployment in the body's model")
				assert.Empty(t, v1.APIVersion)

				require.Equal(t, []int{http.StatusOK}, statuses(f.openai))
				oa := f.openai.Calls()[0]
				assert.Equal(t, op.operation, oa.Operation)
				assert.Equal(t, openAIModels[op.model], oa.Model, "the provider's name for the model")
				assert.Equal(t, "Bearer "+f.openai.Key, oa.Header.Get("Authorization"))
				assert.Empty(t, oa.Header.Get("Api-Key"), "no Azure header to an OpenAI API")
				assert.Empty(t, oa.APIVersion)
				assert.Equal(t, op.name == "stream", oa.Stream)

				for _, s := range []*failovertest.Server{f.classic, f.v1, f.openai} {
					assertOnlyOwnKey(t, s)
				}
			})
		}
	}
}
