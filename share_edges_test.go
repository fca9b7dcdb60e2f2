package failover_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/storetest"
)

// TestLearnedRestNeverShortensOwnRest: A's 401 rests its region for DefaultFaultRest and is not shared (it
// depends on A's own key); B then finds the region unreachable and shares a 10 s rest. A takes in only rests that
// end later than its own, so its credential rest stands and A does not send its refused key again 10 s later.
func TestLearnedRestNeverShortensOwnRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 2, store, fixedBackoff(10*time.Second))
		east, a, b := f.servers[0], f.clients[0], f.clients[1]
		east.Script(failovertest.Unauthorized(), failovertest.Disconnect())

		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A's key is refused: A rests the region for 5 min")
		faultReason := a.Health()[0].Reason
		require.Equal(t, failover.StateResting, a.Health()[0].State)
		time.Sleep(100 * time.Millisecond)
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "B meets no answer: a 10 s shared rest")
		require.Equal(t, 2, east.Requests())

		time.Sleep(failover.DefaultStoreRefresh) // A's copy is stale: its next request loads B's record
		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"))
		assert.Equal(t, faultReason, a.Health()[0].Reason, "A's own credential rest was replaced by B's shorter rest")

		time.Sleep(10 * time.Second) // B's rest is over; A's own 401 rest has more than 4 minutes to go
		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A sent its refused key to the region again")
		assert.Equal(t, 2, east.Requests())
	})
}

// lateClaimStore is a store whose Claim lands, but whose answer comes after the client's deadline, as with a Redis
// that is briefly slower than StoreTiming.Timeout.
type lateClaimStore struct{ failover.Store }

func (s lateClaimStore) Claim(ctx context.Context, backend string, models []string, owner string, ttl time.Duration, now time.Time) (bool, []failover.Record, error) {
	ok, recs, err := s.Store.Claim(context.WithoutCancel(ctx), backend, models, owner, ttl, now)
	<-ctx.Done()
	_, _ = ok, recs
	if err != nil {
		return false, nil, err
	}
	return false, nil, ctx.Err()
}

// TestClaimWhoseAnswerWasLostIsReleased: a Claim that landed in the store but whose answer came too late is
// released all the same when the attempt ends (Release is owner-checked, harmless if nothing was claimed), so the
// next replica can probe at once rather than after the claim's TTL.
func TestClaimWhoseAnswerWasLostIsReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 1, store, fixedBackoff(10*time.Second))
		east, b := f.servers[0], f.clients[0]
		a := replica(t, regionsOf(f.servers...), lateClaimStore{store}, failover.WithHTTPClient(f.network.Client()),
			fixedBackoff(10*time.Second))

		east.Script(failovertest.InternalError())
		require.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "B meets a 500: a shared 10 s rest")
		require.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A learned it")
		time.Sleep(10 * time.Second)

		// A's claim lands, its answer is late: A probes on its own, and the region answers at once.
		require.Equal(t, "Hello from eastus.", ask(t, a, "gpt-4o"))
		probeEnded := time.Now()
		require.Equal(t, 2, east.Requests())

		time.Sleep(2 * time.Second)
		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"),
			"B is still refused the probe 2 s after A's probe ended: A's claim was never released")
		t.Logf("B kept off the region for the claim's TTL: %s after A's probe", time.Since(probeEnded))
	})
}

// TestOwnAnswerOverrulesAnOlderSharedOutage: B cannot reach eastus (its own network: a bad node, DNS, egress)
// and shares a rest of the whole region; A is then answered by eastus, after B's rest began. A does not take in
// B's older record: one sick replica must not take a healthy region from the fleet.
func TestOwnAnswerOverrulesAnOlderSharedOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 2, store, fixedBackoff(10*time.Second))
		east, a, b := f.servers[0], f.clients[0], f.clients[1]
		east.Script(failovertest.Reply{}, failovertest.Disconnect())

		require.Equal(t, "Hello from eastus.", ask(t, a, "gpt-4o"), "A loads (nothing yet) and is served")
		require.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "B gets no answer: a shared 10 s rest")
		time.Sleep(500 * time.Millisecond)
		require.Equal(t, "Hello from eastus.", ask(t, a, "gpt-4o"), "A is served after B's rest began")
		time.Sleep(600 * time.Millisecond) // A's copy is stale: it loads B's older record
		assert.Equal(t, "Hello from eastus.", ask(t, a, "gpt-4o"),
			"A passes over a region that served it after the shared rest was set")
		assert.Equal(t, failover.StateServing, a.Health()[0].State)
	})
}

// TestMissingModelIsSharedPerDeployment: during a rollout, new replicas map gpt-4o to a deployment not yet
// created and meet 404s; old replicas, whose deployment exists, keep sending gpt-4o to the region, because a
// record names the deployment it is about.
func TestMissingModelIsSharedPerDeployment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		east := failovertest.NewRegion("eastus", failovertest.OnNetwork(network), failovertest.WithDeployments("gpt4o-old"))
		t.Cleanup(east.Close)
		west := failovertest.NewRegion("westus", failovertest.OnNetwork(network))
		t.Cleanup(west.Close)
		regions := func(deployment string) []failover.Region {
			return []failover.Region{
				{Name: "eastus", Endpoint: east.URL, APIKey: east.Key, Deployments: map[string]string{"gpt-4o": deployment}},
				{Name: "westus", Endpoint: west.URL, APIKey: west.Key},
			}
		}
		store := &storetest.Memory{}
		newer := replica(t, regions("gpt4o-new"), store, failover.WithHTTPClient(network.Client()))
		older := replica(t, regions("gpt4o-old"), store, failover.WithHTTPClient(network.Client()))

		require.Equal(t, "Hello from eastus.", ask(t, older, "gpt-4o"), "the old replica's deployment exists")
		require.Equal(t, "Hello from westus.", ask(t, newer, "gpt-4o"), "the new replica's deployment does not: 404")
		time.Sleep(failover.DefaultStoreRefresh)
		assert.Equal(t, "Hello from eastus.", ask(t, older, "gpt-4o"),
			"the old replica passes its own, existing deployment over for an hour")
		assert.Empty(t, older.Health()[0].Models)
	})
}

// flakyLoadStore fails Load while fail is set, as a store that missed one deadline would.
type flakyLoadStore struct {
	failover.Store
	fail *atomic.Bool
}

func (s flakyLoadStore) Load(ctx context.Context, backends []string, now time.Time) ([]failover.Record, error) {
	if s.fail.Load() {
		return nil, storetest.ErrDown
	}
	return s.Store.Load(ctx, backends, now)
}

// TestProbeIsReleasedWhileTheClientGoesOnAlone: when another store call of a replica fails while its probe is in
// flight, the replica goes on alone for Retry, but still releases the probe's claim when the probe ends, so that
// the other replicas are not refused the probe until the claim's TTL.
func TestProbeIsReleasedWhileTheClientGoesOnAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 1, store, fixedBackoff(10*time.Second))
		east, b := f.servers[0], f.clients[0]
		var fail atomic.Bool
		a := replica(t, regionsOf(f.servers...), flakyLoadStore{store, &fail}, failover.WithHTTPClient(f.network.Client()),
			fixedBackoff(10*time.Second))

		east.Script(failovertest.InternalError())
		require.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "B meets a 500: a shared 10 s rest")
		require.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A learned it")
		time.Sleep(10 * time.Second)

		east.Script(failovertest.Slow(5*time.Second, failovertest.OK("probe answered")))
		probe := make(chan string, 1)
		go func() {
			content, _ := askCtx(t.Context(), a, "gpt-4o")
			probe <- content
		}()
		synctest.Wait() // A claimed the probe; the region holds its answer for 5 s
		time.Sleep(time.Second)
		fail.Store(true)
		require.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A's load fails: Retry (5 s) starts")
		fail.Store(false)
		require.Equal(t, "probe answered", <-probe, "the probe is served within the Retry window")

		time.Sleep(time.Second)
		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"),
			"B is refused the probe: A's claim was not released and holds until its TTL (61 s)")
	})
}
