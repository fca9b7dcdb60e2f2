package failover

import (
	"maps"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEnvRegionKinds: AZURE_OPENAI_KIND_N makes a region OpenAI-compatible, an endpoint ending in /openai/v1 is
// Azure's v1 surface, and the shared api-version is every classic region's but not theirs.
func TestEnvRegionKinds(t *testing.T) {
	c, err := clientFromEnv(t, map[string]string{
		"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret,
		"AZURE_OPENAI_ENDPOINT_2": "https://two.openai.azure.com/openai/v1/", "AZURE_OPENAI_API_KEY_2": envSecret,
		"AZURE_OPENAI_ENDPOINT_3": "https://api.other.example/v1", "AZURE_OPENAI_API_KEY_3": envSecret,
		"AZURE_OPENAI_KIND_3": "OpenAI", "AZURE_OPENAI_DEPLOYMENTS_3": "gpt-4o=other/gpt-4o:latest",
		"AZURE_OPENAI_KIND_1":      "azure",
		"AZURE_OPENAI_API_VERSION": "2025-04-01-preview",
	})
	require.NoError(t, err)
	b := c.engine.backends
	require.Len(t, b, 3)
	assert.Equal(t, surfaceClassic, b[0].surface)
	assert.Equal(t, "api-version=2025-04-01-preview", b[0].query)
	assert.Equal(t, surfaceV1, b[1].surface)
	assert.Empty(t, b[1].query, "the shared api-version is not a v1 region's")
	assert.Equal(t, "/openai/v1", b[1].path)
	assert.Equal(t, []string{envSecret}, b[1].authValue)
	assert.Equal(t, surfaceOpenAI, b[2].surface)
	assert.False(t, b[2].fallback, "a member of the list, not the fallback")
	assert.Nil(t, c.engine.fallback)
	assert.Equal(t, "Authorization", b[2].authHeader)
	assert.Equal(t, []string{"Bearer " + envSecret}, b[2].authValue)
	assert.Equal(t, "other/gpt-4o:latest", b[2].deployment("gpt-4o"))
	assert.Equal(t, "https://two.openai.azure.com/openai/v1/chat/completions", b[1].url("/chat/completions", "gpt-4o", "").String())
	assert.Equal(t, "https://api.other.example/v1/embeddings", b[2].url("/embeddings", "x", "2026-01-01").String())
}

// TestEnvOpenAIAPIVersion: the npm AzureOpenAI client's OPENAI_API_VERSION is read where
// AZURE_OPENAI_API_VERSION is not set, and errors name the variable the value came from.
func TestEnvOpenAIAPIVersion(t *testing.T) {
	regions := map[string]string{"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret}
	with := func(extra map[string]string) map[string]string {
		env := maps.Clone(regions)
		maps.Copy(env, extra)
		return env
	}
	c, err := clientFromEnv(t, with(map[string]string{"OPENAI_API_VERSION": "2025-03-01-preview"}))
	require.NoError(t, err)
	assert.Equal(t, "api-version=2025-03-01-preview", c.engine.backends[0].query)

	c, err = clientFromEnv(t, with(map[string]string{"OPENAI_API_VERSION": "2025-03-01-preview", "AZURE_OPENAI_API_VERSION": "2024-06-01"}))
	require.NoError(t, err)
	assert.Equal(t, "api-version=2024-06-01", c.engine.backends[0].query, "AZURE_OPENAI_API_VERSION wins")

	_, err = clientFromEnv(t, with(map[string]string{"OPENAI_API_VERSION": "yesterday"}))
	require.ErrorIs(t, err, ErrConfig)
	assert.Contains(t, err.Error(), "OPENAI_API_VERSION: is not an api-version")
}

// TestEnvRegionKindErrors names the variable that is wrong.
func TestEnvRegionKindErrors(t *testing.T) {
	_, err := clientFromEnv(t, map[string]string{
		"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret,
		"AZURE_OPENAI_KIND_1": "anthropic",
	})
	require.ErrorIs(t, err, ErrConfig)
	assert.Contains(t, err.Error(), "AZURE_OPENAI_KIND_1: is not a region kind")

	_, err = clientFromEnv(t, map[string]string{
		"AZURE_OPENAI_ENDPOINT_2": "https://two.openai.azure.com/openai/v1", "AZURE_OPENAI_API_KEY_2": envSecret,
		"AZURE_OPENAI_API_VERSION_2": "2024-10-21",
		"AZURE_OPENAI_ENDPOINT_3":    "https://api.other.example/v1", "AZURE_OPENAI_KIND_3": "openai", "AZURE_OPENAI_AUTH_3": "entra",
	})
	require.ErrorIs(t, err, ErrConfig)
	assert.Contains(t, err.Error(), "AZURE_OPENAI_API_VERSION_2: is set, but the endpoint is Azure's v1 surface")
	assert.Contains(t, err.Error(), "AZURE_OPENAI_AUTH_3: is set, but the region is an OpenAI-compatible API")
	assert.NotContains(t, err.Error(), envSecret)
}

// TestEnvSharedSettingsAreAzures: the unsuffixed deployments are Azure deployment names, not an OpenAI-compatible
// API's model names; OPENAI_API_VERSION=preview (another client's setting for the v1 surface) is ignored.
func TestEnvSharedSettingsAreAzures(t *testing.T) {
	c, err := clientFromEnv(t, map[string]string{
		"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret,
		"AZURE_OPENAI_ENDPOINT_2": "https://api.other.example/v1", "AZURE_OPENAI_API_KEY_2": envSecret,
		"AZURE_OPENAI_KIND_2":      "openai",
		"AZURE_OPENAI_DEPLOYMENTS": "gpt-4o=gpt-4o-prod",
		"OPENAI_API_VERSION":       "preview",
	})
	require.NoError(t, err)
	b := c.engine.backends
	assert.Equal(t, map[string]string{"gpt-4o": "gpt-4o-prod"}, b[0].deployments)
	assert.Equal(t, "api-version="+DefaultAPIVersion, b[0].query)
	assert.Empty(t, b[1].deployments)
	assert.Equal(t, "gpt-4o", b[1].deployment("gpt-4o"))
}

// TestOneResourceOnTwoSurfacesIsOneRegion: a resource's classic and v1 endpoints share its quota; listing both
// would fail over to the same deployments.
func TestOneResourceOnTwoSurfacesIsOneRegion(t *testing.T) {
	_, err := New([]Region{
		{Name: "classic", Endpoint: "https://res.openai.azure.com", APIKey: envSecret},
		{Name: "v1", Endpoint: "https://RES.openai.azure.com/openai/v1/", APIKey: envSecret},
	})
	require.ErrorIs(t, err, ErrConfig)
	assert.ErrorContains(t, err, "regions[1].Endpoint: is the same endpoint as regions[0].Endpoint")
}
