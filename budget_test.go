package failover_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAttemptBudgetBoundsManyThrottledRegions: with thirty regions all throttled, one request makes at most
// MaxDefaultAttemptBudget upstream calls, and says its budget was spent; its answer is still the 429 of
// throttled regions.
func TestAttemptBudgetBoundsManyThrottledRegions(t *testing.T) {
	names := make([]string, 30)
	for i := range names {
		names[i] = fmt.Sprintf("region%02d", i)
	}
	servers := startRegions(t, names)
	for _, s := range servers {
		s.Script(failovertest.RateLimited(30 * time.Second))
	}
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0), failover.WithQuotaSteering(false))
	_, err := client.ChatCompletion(t.Context(), hello())
	var exhausted *failover.ExhaustedError
	require.ErrorAs(t, err, &exhausted)
	assert.Len(t, exhausted.Attempts, failover.MaxDefaultAttemptBudget)
	assert.Equal(t, failover.MaxDefaultAttemptBudget, exhausted.Budget)
	assert.Contains(t, err.Error(), "attempt budget of 20 spent")
	calls := 0
	for _, s := range servers {
		calls += len(s.Calls())
	}
	assert.Equal(t, failover.MaxDefaultAttemptBudget, calls)
	assert.Equal(t, http.StatusTooManyRequests, failover.AnswerError(t.Context(), err).Status)
}

// TestAttemptBudgetBoundsWaitingPasses: a request that waits for two failing regions to come back, pass after
// pass, stops after each was tried twice, although its wait limit would allow more passes.
func TestAttemptBudgetBoundsWaitingPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithMaxWait(time.Hour),
			failover.WithBackoff(func(int) time.Duration { return time.Second }))
		for _, s := range servers {
			s.Script(failovertest.Unavailable(), failovertest.Unavailable(), failovertest.Unavailable())
		}
		var rec recorder
		_, err := client.ChatCompletion(rec.context(t.Context()), hello())
		var exhausted *failover.ExhaustedError
		require.ErrorAs(t, err, &exhausted)
		assert.Equal(t, 4, exhausted.Budget)
		assert.Equal(t, []string{"eastus", "westus", "eastus", "westus"}, rec.regions())
		assert.False(t, exhausted.RetryAt.IsZero(), "the caller is told when to come back")
	})
}

// TestAttemptBudgetOption: WithAttemptBudget sets the bound; a negative one is a configuration error naming it.
func TestAttemptBudgetOption(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus", "centralus"})
	for _, s := range servers {
		s.Script(failovertest.Unavailable())
	}
	client := newClient(t, regionsOf(servers...), failover.WithAttemptBudget(1), failover.WithMaxWait(0))
	_, err := client.ChatCompletion(t.Context(), hello())
	var exhausted *failover.ExhaustedError
	require.ErrorAs(t, err, &exhausted)
	assert.Len(t, exhausted.Attempts, 1)

	_, err = failover.New(regionsOf(servers...), failover.WithAttemptBudget(-1))
	require.ErrorIs(t, err, failover.ErrConfig)
	assert.Contains(t, configFields(err), "WithAttemptBudget")
	assert.False(t, errors.Is(err, failover.ErrExhausted))
}
