package gateway_test

// Third review of issue 18 (after "Issue 18 review fixes"), through the gateway: each test here fails on the code
// as reviewed.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// BUG: X-Failover-Region "names the region whose answer it is, when one answered". A seek for an id no region
// holds answers with the last region's own 404 (or 400 previous_response_not_found for a create), as it came;
// but that attempt is reported as failed over, so the header is missing, as if the gateway had made the answer up.
func TestSeekNotFoundNamesTheRegionThatAnswered(t *testing.T) {
	f := v1Fleet(t, "eastus", "westus")
	auth := map[string]string{"api-key": gatewayKey}
	for _, tc := range []struct{ name, method, path, body string }{
		{"by id", http.MethodGet, "/v1/responses/resp_nowhere", ""},
		{"create", http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"more","previous_response_id":"resp_nowhere"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var answer string
			if tc.method == http.MethodPost {
				resp, answer = post(t, f.url, tc.path, tc.body, auth)
			} else {
				resp, answer = send(t, tc.method, f.url+tc.path, auth, nil)
			}
			require.Contains(t, []int{http.StatusNotFound, http.StatusBadRequest}, resp.StatusCode, answer)
			assert.Equal(t, "2", resp.Header.Get("X-Failover-Attempts"))
			assert.Equal(t, "westus", resp.Header.Get("X-Failover-Region"), "westus's not-found is the answer: %s", answer)
		})
	}
}

// BUG: aoai_gateway_failovers_total counts "requests served by a region after another had failed them". A seek
// whose first region said the id is not there (a correct answer, not a failure) and whose second region served
// it is counted as a failover of westus, so that a fleet whose replicas do not share owners shows failovers while
// every region is healthy.
func TestSeekIsNotCountedAsAFailover(t *testing.T) {
	f := v1Fleet(t, "eastus", "westus")
	west := f.regions[1]
	maker, err := failover.New([]failover.Region{{Name: "westus", Endpoint: west.V1URL, APIKey: west.Key}},
		failover.WithModel("gpt-4o"))
	require.NoError(t, err)
	t.Cleanup(maker.CloseIdleConnections)
	created, err := maker.CreateResponse(t.Context(), openai.CreateResponseRequest{Model: "gpt-4o", Input: "hi"})
	require.NoError(t, err)

	auth := map[string]string{"api-key": gatewayKey}
	resp, answer := send(t, http.MethodGet, f.url+"/v1/responses/"+created.ID, auth, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, answer)
	var got struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(answer), &got))
	require.Equal(t, created.ID, got.ID)
	assert.Equal(t, "westus", resp.Header.Get("X-Failover-Region"))

	var failovers []string
	for _, line := range strings.Split(metricsText(t, f.url), "\n") {
		if strings.HasPrefix(line, "aoai_gateway_failovers_total{") {
			failovers = append(failovers, line)
		}
	}
	assert.Empty(t, failovers, "no region failed: eastus said it has not the id")
}
