package failover

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withModel replaces a "model" member that names no model ("" as the npm AzureOpenAI class sends with a
// deployment set, or null) instead of adding a second one, which JSON decoders would read as the last value.
func TestWithModelReplacesAnEmptyModel(t *testing.T) {
	for _, body := range []string{`{"model":"","messages":[]}`, `{"messages":[],"model":null}`} {
		out, err := withModel(bytesBody([]byte(body)), "gpt-4o")
		require.NoError(t, err)
		rc, err := out.get()
		require.NoError(t, err)
		data, _ := io.ReadAll(rc)
		var m struct {
			Model string `json:"model"`
		}
		require.NoError(t, json.Unmarshal(data, &m), "%s", data)
		assert.Equal(t, "gpt-4o", m.Model, "what a JSON decoder reads from %s", data)
		assert.Equal(t, 1, strings.Count(string(data), `"model"`), "one model member: %s", data)
	}
}

// The same through Client.Do: an Azure-shaped request whose body says "model":"" reaches the OpenAI fallback
// with the path's model.
func TestFallbackGetsThePathModelOverAnEmptyOne(t *testing.T) {
	region := failovertest.NewRegion("eastus")
	defer region.Close()
	region.SetDefault(failovertest.Unavailable())
	fallback := failovertest.NewOpenAI()
	defer fallback.Close()
	c, err := New([]Region{{Name: "eastus", Endpoint: region.URL, APIKey: region.Key}},
		WithOpenAIFallback(fallback.Key, fallback.URL), WithMaxWait(0))
	require.NoError(t, err)
	defer c.CloseIdleConnections()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		"https://gateway.invalid/openai/deployments/gpt-4o/chat/completions",
		strings.NewReader(`{"model":"","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, fallback.Calls(), 1)
	assert.Equal(t, "gpt-4o", fallback.Calls()[0].Model, "the model the fallback read from %s", fallback.Calls()[0].Body)
}
