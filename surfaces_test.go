package failover_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryKindOfRegionInOneList fails over from a classic region to a v1 one to an OpenAI-compatible one, each
// sent the request in its own shape: the deployment in the path and an api-version, the deployment in the body
// and none, the provider's model name in the body with a Bearer key.
func TestEveryKindOfRegionInOneList(t *testing.T) {
	classic, v1 := failovertest.NewRegion("classic"), failovertest.NewRegion("v1")
	other := failovertest.NewOpenAI()
	for _, s := range []*failovertest.Server{classic, v1, other} {
		t.Cleanup(s.Close)
	}
	classic.Script(failovertest.RateLimited(30 * time.Second))
	v1.Script(failovertest.InternalError())
	client := newClient(t, []failover.Region{
		{Name: "classic", Endpoint: classic.URL, APIKey: classic.Key, Deployments: map[string]string{"gpt-4o": "chat"}},
		{Name: "v1", Endpoint: v1.V1URL + "/", APIKey: v1.Key, Deployments: map[string]string{"gpt-4o": "chat-v1"}},
		{Name: "other", Endpoint: other.URL, APIKey: other.Key, Kind: failover.KindOpenAI,
			Deployments: map[string]string{"gpt-4o": "gpt-4o-2024-08-06"}},
	})
	var rec recorder
	resp, err := client.CreateChatCompletion(rec.context(t.Context()), chatRequest())
	require.NoError(t, err)
	assert.Equal(t, "Hello from openai.", resp.Choices[0].Message.Content)
	assert.Equal(t, []string{"classic", "v1", "other"}, rec.regions())
	assert.Equal(t, []string{"chat", "chat-v1", "gpt-4o-2024-08-06"},
		[]string{rec.list()[0].Deployment, rec.list()[1].Deployment, rec.list()[2].Deployment})

	c := classic.Calls()[0]
	assert.False(t, c.V1)
	assert.Equal(t, "chat", c.Deployment)
	assert.Equal(t, failover.DefaultAPIVersion, c.APIVersion)
	assert.Equal(t, "gpt-4o", c.Model, "the classic surface reads the path; the body goes as it came")

	c = v1.Calls()[0]
	assert.True(t, c.V1, "an endpoint ending in /openai/v1 is the v1 surface")
	assert.Equal(t, "chat-v1", c.Deployment, "the deployment is the body's model")
	assert.Empty(t, c.APIVersion, "the v1 surface takes no dated api-version")
	assert.Equal(t, v1.Key, c.Header.Get("Api-Key"))
	assert.True(t, c.Authorized)

	c = other.Calls()[0]
	assert.Equal(t, "gpt-4o-2024-08-06", c.Model, "the provider's name for the model")
	assert.Equal(t, "Bearer "+other.Key, c.Header.Get("Authorization"))
	assert.Empty(t, c.Header.Get("Api-Key"))
	assert.True(t, c.Authorized)
}

// TestOpenAICompatibleRegionKeepsItsPriority: an OpenAI-compatible region is a member of the ordered list, tried
// by its priority before a lower-priority Azure region, and not held back for the last resort.
func TestOpenAICompatibleRegionKeepsItsPriority(t *testing.T) {
	azure := failovertest.NewRegion("eastus")
	other := failovertest.NewOpenAI()
	t.Cleanup(azure.Close)
	t.Cleanup(other.Close)
	client := newClient(t, []failover.Region{
		{Name: "eastus", Endpoint: azure.URL, APIKey: azure.Key, Priority: 1},
		{Name: "second-org", Endpoint: other.URL, APIKey: other.Key, Kind: failover.KindOpenAI},
	})
	assert.Equal(t, []string{"second-org", "eastus"}, client.Regions())
	_, err := client.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Equal(t, 1, other.Requests())
	assert.Zero(t, azure.Requests())
}

// TestV1MissingModelFailsOverAndIsRemembered: the v1 surface says a model is missing with a 400 (or 404) and no
// DeploymentNotFound code; the region is taken to lack the model, and the next request passes it over.
func TestV1MissingModelFailsOverAndIsRemembered(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusNotFound} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			missing := failovertest.V1DeploymentNotFound()
			missing.Status = status
			servers[0].Script(missing)
			regions := regionsOf(servers...)
			regions[0].Endpoint = servers[0].V1URL
			client := newClient(t, regions)
			for range 2 {
				_, err := client.ChatCompletion(t.Context(), hello())
				require.NoError(t, err)
			}
			assert.Equal(t, 1, servers[0].Requests(), "the second request passed eastus over")
			assert.Equal(t, 2, servers[1].Requests())
			h := client.Health()[0]
			require.Len(t, h.Models, 1)
			assert.Equal(t, failover.StateMissing, h.Models[0].State)
		})
	}
}

// TestV1RealMissingDeploymentAnswer is the same with the fake's own answer for a deployment it does not have.
func TestV1RealMissingDeploymentAnswer(t *testing.T) {
	east := failovertest.NewRegion("eastus", failovertest.WithDeployments("other"))
	west := failovertest.NewRegion("westus")
	t.Cleanup(east.Close)
	t.Cleanup(west.Close)
	client := newClient(t, []failover.Region{
		{Name: "eastus", Endpoint: east.V1URL, APIKey: east.Key},
		{Name: "westus", Endpoint: west.V1URL, APIKey: west.Key},
	})
	var rec recorder
	_, err := client.ChatCompletion(rec.context(t.Context()), hello())
	require.NoError(t, err)
	require.Len(t, rec.list(), 2)
	assert.Equal(t, http.StatusBadRequest, rec.list()[0].Status)
	assert.Equal(t, time.Hour, rec.list()[0].Rest.Round(time.Minute), "missing for WithMissingModelRest")
}

// TestWrongPathIsTheRequestsAnswer: a 404 that is not about the model (an endpoint with a wrong path) goes back
// to the caller at once: every region would be asked for nothing, and the model is not marked missing.
func TestWrongPathIsTheRequestsAnswer(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.Reply{Status: http.StatusNotFound, Body: `{"error":{"code":"404","message":"Resource not found"}}`})
	client := newClient(t, regionsOf(servers...))
	_, err := client.ChatCompletion(t.Context(), hello())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusNotFound, apiErr.HTTPStatusCode)
	assert.Zero(t, servers[1].Requests())
	assert.Empty(t, client.Health()[0].Models)
}

// TestCallersNewerAPIVersionIsKept: a classic region's api-version is a floor: a caller (an SDK) that asks for a
// newer one gets it, an older or garbled one is replaced, and a v1 region gets none.
func TestCallersNewerAPIVersionIsKept(t *testing.T) {
	servers := startRegions(t, []string{"classic", "v1"})
	regions := regionsOf(servers...)
	regions[0].APIVersion = "2024-10-21"
	regions[1].Endpoint = servers[1].V1URL
	client := newClient(t, regions)
	cases := []struct{ asked, want string }{
		{"2025-04-01-preview", "2025-04-01-preview"},
		{"2024-02-01", "2024-10-21"},
		{"2024-10-21-preview", "2024-10-21"}, // the same date: the region's stands
		{"latest", "2024-10-21"},
		{"2025-13-45", "2024-10-21"}, // not a date
		{"", "2024-10-21"},
	}
	for _, tc := range cases {
		path := "https://caller.example/openai/deployments/gpt-4o/chat/completions"
		if tc.asked != "" {
			path += "?api-version=" + tc.asked
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(`{"messages":[]}`))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		readAll(t, resp)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		calls := servers[0].Calls()
		assert.Equal(t, tc.want, calls[len(calls)-1].APIVersion, "asked %q", tc.asked)
	}

	servers[0].SetDefault(failovertest.InternalError())
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		"https://caller.example/openai/deployments/gpt-4o/chat/completions?api-version=2025-04-01-preview",
		strings.NewReader(`{"messages":[]}`))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	v1 := servers[1].Calls()[0]
	assert.Empty(t, v1.APIVersion, "the v1 surface refuses a dated api-version")
	assert.Equal(t, "gpt-4o", v1.Deployment, "the model of an Azure path is written into the v1 body")
}

// TestRegionKindConfigErrors: what each kind of region does not take is refused, naming the field.
func TestRegionKindConfigErrors(t *testing.T) {
	const key = "0123456789abcdef"
	cases := []struct {
		name   string
		region failover.Region
		field  string
		want   string
	}{
		{"v1 with a dated api-version", failover.Region{Endpoint: "https://r.openai.azure.com/openai/v1", APIKey: key, APIVersion: "2024-10-21"},
			"regions[0].APIVersion", "refuses a dated api-version"},
		{"classic endpoint with /openai", failover.Region{Endpoint: "https://r.openai.azure.com/openai/", APIKey: key},
			"regions[0].Endpoint", "ending in /openai/v1"},
		{"classic endpoint with a deployment path", failover.Region{Endpoint: "https://r.openai.azure.com/openai/deployments/gpt-4o", APIKey: key},
			"regions[0].Endpoint", "has an /openai path"},
		{"openai kind with an api-version", failover.Region{Endpoint: "https://api.example.com/v1", APIKey: key, Kind: failover.KindOpenAI, APIVersion: "2024-10-21"},
			"regions[0].APIVersion", "takes no api-version"},
		{"openai kind with a credential", failover.Region{Endpoint: "https://api.example.com/v1", Kind: failover.KindOpenAI, Credential: &configCredential{}},
			"regions[0].Credential", "takes an API key"},
		{"unknown kind", failover.Region{Endpoint: "https://r.openai.azure.com", APIKey: key, Kind: 7},
			"regions[0].Kind", "Kind(7)"},
		{"openai kind with a control character in a model name", failover.Region{Endpoint: "https://api.example.com/v1", APIKey: key,
			Kind: failover.KindOpenAI, Deployments: map[string]string{"gpt-4o": "bad\nname"}}, "regions[0].Deployments", "invalid model name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := failover.New([]failover.Region{tc.region})
			assert.Nil(t, c)
			require.ErrorIs(t, err, failover.ErrConfig)
			assert.Contains(t, configFields(err), tc.field)
			assert.ErrorContains(t, err, tc.want)
			assert.NotContains(t, err.Error(), key)
		})
	}

	// What each kind does take.
	for _, r := range []failover.Region{
		{Endpoint: "https://r.openai.azure.com/openai/v1", APIKey: key, APIVersion: "preview"},
		{Endpoint: "https://r.openai.azure.com/openai/v1/", Credential: &configCredential{}},
		{Endpoint: "https://api.together.example/v1", APIKey: key, Kind: failover.KindOpenAI,
			Deployments: map[string]string{"llama": "meta-llama/Llama-3.3-70B-Instruct-Turbo"}},
	} {
		c, err := failover.New([]failover.Region{r})
		require.NoError(t, err, "%v", r)
		c.CloseIdleConnections()
	}
}
