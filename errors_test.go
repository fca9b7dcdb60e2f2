package failover_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExhaustedErrorCountsAttemptsInTheSingular(t *testing.T) {
	failed := failover.Attempt{Region: "eastus", Status: http.StatusInternalServerError, Outcome: failover.OutcomeFailedOver}
	resting := failover.Skip{Region: "westus", State: failover.StateResting, Reason: "429 rate limited"}
	cases := []struct {
		name string
		err  *failover.ExhaustedError
		want string
	}{
		{"none", &failover.ExhaustedError{Skipped: []failover.Skip{resting}}, "(0 attempts, 1 passed over)"},
		{"one", &failover.ExhaustedError{Attempts: []failover.Attempt{failed}}, "(1 attempt)"},
		{"one and a skip", &failover.ExhaustedError{Attempts: []failover.Attempt{failed}, Skipped: []failover.Skip{resting}}, "(1 attempt, 1 passed over)"},
		{"two", &failover.ExhaustedError{Attempts: []failover.Attempt{failed, failed}}, "(2 attempts)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.err.Error()
			assert.Contains(t, msg, tc.want)
			assert.NotContains(t, msg, " 1 attempts")
		})
	}
}

func TestExhaustedErrorOfOneRealAttempt(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	servers[0].Script(failovertest.InternalError())
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	_, err := client.ChatCompletion(t.Context(), hello())
	var exhausted *failover.ExhaustedError
	require.ErrorAs(t, err, &exhausted)
	require.Len(t, exhausted.Attempts, 1)
	assert.Contains(t, err.Error(), `for model "gpt-4o" (1 attempt`)
	assert.NotContains(t, err.Error(), "1 attempts")

	servers = startRegions(t, []string{"eastus", "westus"})
	for _, s := range servers {
		s.Script(failovertest.RateLimited(time.Minute))
	}
	client = newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	_, err = client.ChatCompletion(t.Context(), hello())
	require.ErrorAs(t, err, &exhausted)
	require.Len(t, exhausted.Attempts, 2)
	assert.Contains(t, err.Error(), "(2 attempts, retry at ")
}

func TestCreateEmbeddingsWithoutAModelFailsAtOnce(t *testing.T) {
	cases := map[string]openai.EmbeddingRequestConverter{
		"EmbeddingRequest":        openai.EmbeddingRequest{Input: []string{"hello"}},
		"EmbeddingRequestStrings": openai.EmbeddingRequestStrings{Input: []string{"hello"}},
		"EmbeddingRequestTokens":  openai.EmbeddingRequestTokens{Input: [][]int{{1, 2, 3}}},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus"})
			// The client's default model is a chat model: it must not stand in for the missing embeddings model.
			client := newClient(t, regionsOf(servers...))
			_, err := client.CreateEmbeddings(t.Context(), req)
			require.Error(t, err)
			assert.ErrorContains(t, err, "embeddings request names no model")
			assert.ErrorContains(t, err, "Model", "the error says what to set")
			assert.NotErrorIs(t, err, failover.ErrExhausted)
			assert.Zero(t, servers[0].Requests(), "no request reached the region")
		})
	}
}

func TestCreateEmbeddingsWithAModelStillServes(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))
	resp, err := client.CreateEmbeddings(t.Context(), openai.EmbeddingRequestStrings{Model: "text-embedding-3-small", Input: []string{"hello"}})
	require.NoError(t, err)
	require.Len(t, resp.Data, 1)
	assert.Equal(t, 1, servers[0].Requests())
	assert.Equal(t, "text-embedding-3-small", servers[0].Calls()[0].Deployment)
}
