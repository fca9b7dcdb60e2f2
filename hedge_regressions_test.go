package failover_test

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHedgeMaxHedgesUnbounded: any MaxHedges New accepts works, math.MaxInt ("hedge to every region") included.
// A race once sized its results channel by MaxHedges, and such values panicked (or ran out of memory); it is
// now sized by the regions left to race.
func TestHedgeMaxHedgesUnbounded(t *testing.T) {
	for _, maxHedges := range []int{math.MaxInt, 1 << 50} {
		t.Run("", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, []string{"eastus", "westus"},
					failover.WithHedging(failover.Hedging{Delay: 100 * time.Millisecond, MaxHedges: maxHedges}))
				r.regions[0].Script(failovertest.Reply{Delay: time.Second})
				var err error
				var content string
				p := recoverCall(func() { content, err = r.client.ChatCompletion(t.Context(), hello()) })
				require.Nil(t, p, "a request with a valid Hedging panicked: %v", p)
				require.NoError(t, err)
				assert.Equal(t, "Hello from westus.", content)
			})
		})
	}
}

// TestHedgeLoserMeasuredForLeastLatency: with StrategyLeastLatency, a region that loses a race is measured by the
// time it had gone unanswered, so it does not keep the "not yet measured: try first" latency of 0 and stay ahead
// of the region that answers: the next requests go to westus directly, as they would without hedging.
func TestHedgeLoserMeasuredForLeastLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100),
			failover.WithStrategy(failover.StrategyLeastLatency), failover.WithQuotaSteering(false))
		east, west := r.regions[0], r.regions[1]
		east.SetDefault(failovertest.Reply{Delay: 5 * time.Second})
		west.SetDefault(failovertest.Reply{Delay: 10 * time.Millisecond})

		content, attempts, took, err := r.chat(t.Context())
		require.NoError(t, err)
		require.Equal(t, "Hello from westus.", content)
		require.Equal(t, 110*time.Millisecond, took)
		require.Equal(t, []summary{
			{"eastus", failover.OutcomeLost, false},
			{"westus", failover.OutcomeServed, true},
		}, summarize(attempts))

		// eastus left 100 ms unanswered; westus answered in 10 ms. The least-latency order should now be westus.
		for i := 2; i <= 5; i++ {
			content, attempts, took, err = r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, []summary{{"westus", failover.OutcomeServed, false}}, summarize(attempts),
				"request %d: eastus, known to be at least 100 ms slow, was tried first again", i)
			assert.Equal(t, 10*time.Millisecond, took, "request %d", i)
			assert.Equal(t, "Hello from westus.", content)
		}
		health := r.client.Health()
		assert.GreaterOrEqual(t, health[0].Latency, 100*time.Millisecond,
			"eastus's latency: it never answered within 100 ms, but Health says %s", health[0].Latency)
	})
}

// levelRecorder is a slog.Handler that keeps every record's level and outcome attribute.
type levelRecorder struct {
	mu      sync.Mutex
	records map[string]slog.Level // outcome: level
}

func (h *levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *levelRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *levelRecorder) WithGroup(string) slog.Handler            { return h }
func (h *levelRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "outcome" {
			h.records[a.Value.String()] = r.Level
		}
		return true
	})
	return nil
}

// TestHedgeLostLoggedAtInfo: a lost race is no failure of its region (it sets no rest), so it is logged at Info
// with refused and canceled attempts (README, WithLogger), not at Warn, where an alert on failures would fire for
// routine hedging.
func TestHedgeLostLoggedAtInfo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &levelRecorder{records: map[string]slog.Level{}}
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100),
			failover.WithLogger(slog.New(h)))
		r.regions[0].Script(failovertest.Reply{Delay: 5 * time.Second})
		_, attempts, _, err := r.chat(t.Context())
		require.NoError(t, err)
		require.Equal(t, failover.OutcomeLost, attempts[0].Outcome)
		h.mu.Lock()
		defer h.mu.Unlock()
		require.Contains(t, h.records, "lost")
		assert.Less(t, h.records["lost"], slog.LevelWarn, "a lost race is logged at %s, as a backend failure", h.records["lost"])
	})
}

// TestHedgeFollowsSteering: steering knows westus has no room left (its last answer said 0 requests remain, for
// a minute) and puts it after eastus; a hedge is not sent to it, since it would pay for exactly the 429 steering
// exists to avoid, and rest westus for its Retry-After.
func TestHedgeFollowsSteering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		west := failovertest.NewRegion("westus", failovertest.OnNetwork(network),
			failovertest.WithQuota(failovertest.Quota{RequestsPerMinute: 1}))
		t.Cleanup(west.Close)
		east := failovertest.NewRegion("eastus", failovertest.OnNetwork(network))
		t.Cleanup(east.Close)
		regions := regionsOf(west, east)
		regions[0].Priority, regions[1].Priority = 0, 1
		client := newClient(t, regions, failover.WithHTTPClient(network.Client()),
			failover.WithHedging(hedge100))

		// westus, first by priority, takes the first request, and says it has no request left this minute.
		attempts := steerSend(t, client, chatRequest())
		assertServedBy(t, attempts, "westus")
		require.Equal(t, "0", attempts[0].Header.Get("X-Ratelimit-Remaining-Requests"))

		// The next request is steered to eastus, which is slow: it is hedged 100 ms later.
		east.Script(failovertest.Reply{Delay: time.Second})
		var rec recorder
		_, err := client.CreateChatCompletion(rec.context(t.Context()), chatRequest())
		require.NoError(t, err)
		served := rec.last()
		require.Equal(t, "eastus", served.Region, "steered away from westus")
		require.False(t, served.Hedged, "eastus was the first attempt sent")
		assert.Zero(t, west.Statuses()[http.StatusTooManyRequests],
			"the hedge went to westus, which steering knew had no room: attempts %v", summarize(rec.list()))
	})
}
