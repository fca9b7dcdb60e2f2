package failover_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSlowReasoningModelIsServedFromAColdStart: a region that takes 70 to 120 s to answer a non-streaming call
// (a reasoning model at high effort), with no latency history and no hedging, is waited for: no attempt is cut,
// none is sent twice.
func TestSlowReasoningModelIsServedFromAColdStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		servers[0].Script(failovertest.Reply{Delay: 70 * time.Second}, failovertest.Reply{Delay: 120 * time.Second})
		for _, want := range []time.Duration{70 * time.Second, 120 * time.Second} {
			var rec recorder
			start := time.Now()
			_, err := client.ChatCompletion(rec.context(t.Context()), hello())
			require.NoError(t, err)
			assert.Equal(t, want, time.Since(start))
			assert.Equal(t, []string{"eastus"}, rec.regions(), "served where it was sent, without a failover")
		}
		assert.Empty(t, servers[1].Calls())
	})
}

// TestSilentRegionIsLeftWithinItsLearnedLimit: once a region has answered a model quickly for a while, a request
// it leaves silent moves on after 4 times its p99, at least the floor (10 s), not after the 5-minute cold-start
// limit.
func TestSilentRegionIsLeftWithinItsLearnedLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		for range 20 {
			servers[0].Script(failovertest.Reply{Delay: 2 * time.Second}) // its p99: 2 s
			_, err := client.ChatCompletion(t.Context(), hello())
			require.NoError(t, err)
		}
		require.Empty(t, servers[1].Calls())

		servers[0].Script(failovertest.Hang())
		var rec recorder
		start := time.Now()
		text, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", text)
		assert.Equal(t, 10*time.Second, time.Since(start), "4 × 2 s is under the floor: the floor")
		require.Len(t, rec.attempts, 2)
		assert.ErrorIs(t, rec.attempts[0].Err, failover.ErrAttemptTimeout)
		assert.ErrorContains(t, rec.attempts[0].Err, "after 10s")
	})
}

// TestLearnedLimitFollowsTheModelsPace: a region whose model takes 30 s gets 2 minutes (4 × its p99) before it
// is taken for silent; a floor at the attempt timeout turns learning off.
func TestLearnedLimitFollowsTheModelsPace(t *testing.T) {
	for name, tc := range map[string]struct {
		opts []failover.Option
		want time.Duration
	}{
		"learned":      {nil, 2 * time.Minute},
		"learning off": {[]failover.Option{failover.WithAttemptFloor(failover.DefaultAttemptTimeout)}, failover.DefaultAttemptTimeout},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				servers, client := bubbleFleet(t, []string{"eastus", "westus"}, tc.opts...)
				for range 20 {
					servers[0].Script(failovertest.Reply{Delay: 30 * time.Second})
					_, err := client.ChatCompletion(t.Context(), hello())
					require.NoError(t, err)
				}
				servers[0].Script(failovertest.Hang())
				start := time.Now()
				_, err := client.ChatCompletion(t.Context(), hello())
				require.NoError(t, err)
				assert.Equal(t, tc.want, time.Since(start))
			})
		})
	}
}

// TestSlowerModelIsRelearned: a region whose model becomes far slower than its learned limit is cut at that
// limit (the requests are served elsewhere), and once it has served nothing of the model for 10 minutes it is
// back on the cold-start limit, where the slow answer is waited for and its new pace learned.
func TestSlowerModelIsRelearned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithQuotaSteering(false))
		for range 20 {
			servers[0].Script(failovertest.Reply{Delay: time.Second})
			_, err := client.ChatCompletion(t.Context(), hello())
			require.NoError(t, err)
		}
		servers[0].SetDefault(failovertest.Reply{Delay: time.Minute}) // the model is slower from now on
		var rec recorder
		start := time.Now()
		text, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", text)
		assert.Equal(t, 10*time.Second, time.Since(start), "cut at the floor: 4 × 1 s is under it")

		time.Sleep(10 * time.Minute) // nothing served by eastus meanwhile
		rec = recorder{}
		start = time.Now()
		text, err = client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", text, "back on the cold-start limit")
		assert.Equal(t, time.Minute, time.Since(start))
	})
}

// TestAttemptFloorOption: a negative floor is a configuration error naming it.
func TestAttemptFloorOption(t *testing.T) {
	_, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: "https://east.example", APIKey: "k"}},
		failover.WithAttemptFloor(-time.Second))
	require.ErrorIs(t, err, failover.ErrConfig)
	assert.Contains(t, configFields(err), "WithAttemptFloor")
}
