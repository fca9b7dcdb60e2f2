package failover_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQuotaRefusedRequestNotGivenBack: a request refused with 429 is one the deployment never counted
// (failovertest's quota, like Azure's, keeps refused requests out of the window), so the meter takes it back: a
// minute later it must not come back as room that never was.
//
// eastus admits 3 requests a minute. Another client fills it at 0 s; this client's request at 1 s gets the
// (unavoidable) 429 and goes to westus. At 60 s the minute is empty again; this client's request is served
// (2 left). At 62 s three requests go out while the others are in flight: eastus has room for 2, and the third
// is steered to westus, not into a second 429.
func TestQuotaRefusedRequestNotGivenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		east := failovertest.NewRegion("eastus", failovertest.OnNetwork(network),
			failovertest.WithQuota(failovertest.Quota{RequestsPerMinute: 3}))
		t.Cleanup(east.Close)
		west := failovertest.NewRegion("westus", failovertest.OnNetwork(network))
		t.Cleanup(west.Close)
		client := newClient(t, regionsOf(east, west), failover.WithHTTPClient(network.Client()),
			failover.WithStrategy(failover.StrategyOrdered))
		other := newClient(t, regionsOf(east), failover.WithHTTPClient(network.Client()))
		start := time.Now()

		for range 3 { // another client takes the whole minute
			_, err := other.CreateChatCompletion(t.Context(), chatRequest())
			require.NoError(t, err)
		}

		time.Sleep(time.Second)
		var rec recorder
		_, err := client.CreateChatCompletion(rec.context(t.Context()), chatRequest())
		require.NoError(t, err)
		require.Equal(t, []summary{
			{"eastus", failover.OutcomeFailedOver, false},
			{"westus", failover.OutcomeServed, false},
		}, summarize(rec.list()), "the first 429 is unavoidable: nothing was known")
		require.Equal(t, http.StatusTooManyRequests, rec.first().Status)

		time.Sleep(time.Until(start.Add(time.Minute))) // the other client's requests leave the minute
		attempts := steerSend(t, client, chatRequest())
		assertServedBy(t, attempts, "eastus")
		require.Equal(t, "2", attempts[0].Header.Get("X-Ratelimit-Remaining-Requests"))

		time.Sleep(2 * time.Second)
		east.SetDefault(failovertest.Slow(time.Second, failovertest.Reply{}))
		west.SetDefault(failovertest.Slow(time.Second, failovertest.Reply{}))
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := client.CreateChatCompletion(context.Background(), chatRequest())
				errs <- err
			}()
			synctest.Wait() // in flight
		}
		for range 3 {
			require.NoError(t, <-errs)
		}
		assert.Equal(t, 1, east.Statuses()[http.StatusTooManyRequests],
			"eastus answered a second 429: the refused request was given back as room; statuses %v", east.Statuses())
	})
}
