package failover_test

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// declaredFleet starts eastus and westus on an in-memory network, eastus declared with deployments (nil: none
// declared), and a client over them.
func declaredFleet(t *testing.T, deployments map[string]string) ([]*failovertest.Server, *failover.Client) {
	t.Helper()
	network := failovertest.NewNetwork()
	t.Cleanup(network.Close)
	servers := startRegions(t, []string{"eastus", "westus"}, failovertest.OnNetwork(network))
	regions := regionsOf(servers...)
	regions[0].Deployments = deployments
	return servers, newClient(t, regions, failover.WithHTTPClient(network.Client()))
}

func TestHealthOfARegionWhoseOnlyDeclaredModelRests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := declaredFleet(t, map[string]string{"gpt-4o": ""})
		servers[0].Script(failovertest.RateLimited(30 * time.Second))
		content, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", content)

		now := time.Now()
		health := client.Health()
		require.Len(t, health, 2)
		east := health[0]
		assert.Equal(t, "eastus", east.Region)
		assert.Equal(t, failover.StateResting, east.State, "its one model rests: the region can serve nothing")
		assert.Equal(t, now.Add(30*time.Second), east.Until)
		assert.True(t, strings.HasPrefix(east.Reason, "gpt-4o: "), "the reason names the model: %q", east.Reason)
		assert.Contains(t, east.Reason, "429")
		require.Len(t, east.Models, 1)
		assert.Equal(t, failover.StateResting, east.Models[0].State)
		assert.Equal(t, failover.StateServing, health[1].State)

		s := fmt.Sprint(health)
		assert.NotContains(t, s, "0001")
		assert.Contains(t, s, "eastus: resting until "+now.Add(30*time.Second).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
		assert.Contains(t, s, "westus: serving")

		// Once the rest is over, the region serves again.
		time.Sleep(30 * time.Second)
		assert.Equal(t, failover.StateServing, client.Health()[0].State)
	})
}

func TestHealthOfARegionWithAnotherDeclaredModelServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := declaredFleet(t, map[string]string{"gpt-4o": "", "gpt-4o-mini": ""})
		servers[0].Script(failovertest.RateLimited(30 * time.Second))
		_, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)

		east := client.Health()[0]
		assert.Equal(t, failover.StateServing, east.State, "gpt-4o-mini still serves")
		assert.Zero(t, east.Until)
		assert.Empty(t, east.Reason)
		require.Len(t, east.Models, 1)
		assert.Equal(t, "gpt-4o", east.Models[0].Model)
		assert.Equal(t, failover.StateResting, east.Models[0].State)
		assert.Equal(t, time.Now().Add(30*time.Second), east.Models[0].Until)
	})
}

func TestHealthOfARegionWithoutDeclaredModels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := declaredFleet(t, nil)
		servers[0].Script(failovertest.RateLimited(30 * time.Second))
		_, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)

		east := client.Health()[0]
		assert.Equal(t, failover.StateServing, east.State, "a region without declared models may have others")
		assert.Zero(t, east.Until)
		require.Len(t, east.Models, 1)
		assert.Equal(t, failover.StateResting, east.Models[0].State)
	})
}

func TestHealthOfARegionWhoseDeclaredModelsAreAllOut(t *testing.T) {
	// gpt-4o rests for 30 s and text-embedding-3-small for 10 s: the region has the state of the one back first.
	synctest.Test(t, func(t *testing.T) {
		servers, client := declaredFleet(t, map[string]string{"gpt-4o": "", "text-embedding-3-small": ""})
		servers[0].Script(failovertest.RateLimited(30*time.Second), failovertest.RateLimited(10*time.Second))
		_, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		_, err = client.CreateEmbeddings(t.Context(), embeddingRequest())
		require.NoError(t, err)

		east := client.Health()[0]
		assert.Equal(t, failover.StateResting, east.State)
		assert.Equal(t, time.Now().Add(10*time.Second), east.Until, "the model back first")
		assert.True(t, strings.HasPrefix(east.Reason, "text-embedding-3-small: "), east.Reason)
		assert.Len(t, east.Models, 2)
	})
}

func TestRegionHealthString(t *testing.T) {
	until := time.Date(2030, 5, 6, 7, 8, 9, 123e6, time.UTC)
	cases := []struct {
		health failover.RegionHealth
		want   string
	}{
		{failover.RegionHealth{Region: "eastus", State: failover.StateServing, Weight: 1},
			"eastus: serving"},
		{failover.RegionHealth{Region: "eastus", State: failover.StateResting, Until: until, Reason: "401: credentials rejected"},
			"eastus: resting until 2030-05-06T07:08:09.123Z (401: credentials rejected)"},
		{failover.RegionHealth{Region: "eastus", State: failover.StateProbing, Reason: "500"},
			"eastus: probing (500)"},
		{failover.RegionHealth{Region: "eastus", State: failover.StateServing, Models: []failover.ModelHealth{
			{Model: "gpt-4o", State: failover.StateResting, Until: until, Reason: "429 rate limited"},
			{Model: "o1", State: failover.StateHalfOpen, Reason: "500"},
		}}, "eastus: serving; gpt-4o resting until 2030-05-06T07:08:09.123Z (429 rate limited); o1 half-open (500)"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.health.String())
		assert.Equal(t, tc.want, fmt.Sprint(tc.health))
		assert.NotContains(t, tc.health.String(), "0001")
	}
}

func TestModelHealthString(t *testing.T) {
	until := time.Date(2030, 5, 6, 7, 8, 9, 0, time.FixedZone("CET", 3600))
	assert.Equal(t, "gpt-4o resting until 2030-05-06T06:08:09.000Z (429 rate limited)",
		failover.ModelHealth{Model: "gpt-4o", State: failover.StateResting, Until: until, Reason: "429 rate limited"}.String(),
		"the time in UTC")
	assert.Equal(t, "gpt-4o probing (500 Internal Server Error)",
		failover.ModelHealth{Model: "gpt-4o", State: failover.StateProbing, Reason: "500 Internal Server Error"}.String())
	assert.Equal(t, "gpt-4o serving", failover.ModelHealth{Model: "gpt-4o"}.String())
}

func TestHealthPrintsWithoutZeroTimes(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.DeploymentNotFound())
	servers[1].Script(failovertest.Unauthorized())
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	_, err := client.ChatCompletion(t.Context(), hello())
	require.Error(t, err)

	health := client.Health()
	s := fmt.Sprint(health)
	assert.NotContains(t, s, "0001", s)
	assert.Contains(t, s, "eastus: serving; gpt-4o missing until ", s)
	assert.Contains(t, s, "westus: resting until ", s)
	for _, rh := range health {
		assert.NotContains(t, rh.String(), "0001")
		for _, m := range rh.Models {
			assert.NotContains(t, m.String(), "0001")
		}
	}
}
