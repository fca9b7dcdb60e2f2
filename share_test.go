package failover_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/storetest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run replicas: two or more Clients that share one Store (mostly a storetest.Memory) in front of the
// same fake regions. Most run in synctest bubbles over failovertest's in-memory network, where time is fake, so
// rests, StoreTiming's Refresh, Timeout and Retry pass at once and exactly. The tests of NewFromEnv cannot run in
// a bubble (they set the process environment) and use loopback servers in real time, without sleeping.

var eastWest = []string{"eastus", "westus"}

// --- Sharing rests between replicas -------------------------------------------------------------------------

func TestShareRetryAfterKeepsEveryReplicaAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 2, store)
		east, a, b := f.servers[0], f.clients[0], f.clients[1]
		east.Script(failovertest.RateLimited(30 * time.Second))

		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A met the 429 and failed over")
		rested := time.Now()
		for range 3 {
			assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"))
		}
		assert.Equal(t, 1, east.Requests(), "B sent nothing to the region A found throttled")
		want := []failover.ModelHealth{{Model: "gpt-4o", State: failover.StateResting,
			Until: rested.Add(30 * time.Second), Reason: "429 rate limited"}}
		assert.Equal(t, want, healthOf(b)[0].Models, "B knows A's rest, its end and its reason")
		assert.Equal(t, healthOf(a), healthOf(b), "both replicas see the same picture")

		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o-mini"), "only the throttled model rests")

		time.Sleep(30*time.Second - time.Nanosecond)
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "still resting a nanosecond before the end")
		assert.Equal(t, healthOf(a), healthOf(b))
		time.Sleep(time.Nanosecond)
		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"), "back exactly when the retry-after ends")
		assert.Equal(t, "Hello from eastus.", ask(t, a, "gpt-4o"))
		assert.Empty(t, healthOf(b)[0].Models)
		assert.Equal(t, healthOf(a), healthOf(b))
	})
}

// TestShareRefreshLoadsOnlyAStaleCopy: with the default Refresh, a replica whose copy of the store is fresh goes
// on with it (and so does not know a rest set since); the first request once its copy is Refresh old loads.
func TestShareRefreshLoadsOnlyAStaleCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 2, store)
		east, a, b := f.servers[0], f.clients[0], f.clients[1]
		// B's first request is served; then A meets a 429.
		east.Script(failovertest.Reply{}, failovertest.RateLimited(30*time.Second))

		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"))
		assert.Equal(t, 1, store.Calls(), "B's first request loaded")
		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"))
		assert.Equal(t, 3, store.Calls(), "A loaded and saved its rest")

		time.Sleep(failover.DefaultStoreRefresh - time.Nanosecond)
		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"), "B's copy is fresh: it does not know A's rest yet")
		assert.Equal(t, 3, store.Calls(), "no load while the copy is fresh")

		time.Sleep(time.Nanosecond)
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "B's copy is Refresh old: it loads and learns")
		assert.Equal(t, 4, store.Calls())
		assert.Equal(t, 3, east.Requests())

		for range 5 {
			ask(t, b, "gpt-4o")
		}
		assert.Equal(t, 4, store.Calls(), "requests within Refresh of the load do not load again")
	})
}

func TestShareNegativeRefreshLoadsOnEveryRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 2, store, failover.WithStoreTiming(failover.StoreTiming{Refresh: -1}))
		east, a, b := f.servers[0], f.clients[0], f.clients[1]

		for i := range 5 {
			assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"))
			assert.Equal(t, i+1, store.Calls(), "each request loads, at the same instant too")
		}
		east.Script(failovertest.RateLimited(30 * time.Second))
		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"))
		calls := store.Calls()
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "B learns A's rest at once, without time passing")
		assert.Equal(t, calls+1, store.Calls())
		assert.Equal(t, 6, east.Requests())
	})
}

// --- The store failing or slow ----------------------------------------------------------------------------------

func TestStoreDownClientGoesOnAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		var logs lockedBuffer
		logger := slog.New(slog.NewTextHandler(&logs, nil))
		f := shareFleet(t, eastWest, 1, store, failover.WithLogger(logger), fixedBackoff(time.Second))
		east, a := f.servers[0], f.clients[0]
		store.SetDown(true)
		start := time.Now()
		retry := failover.DefaultStoreRetry

		// Rests and probes work from A's own state, and none of them calls the store: the 500's rest is not
		// saved, and the probe after it claims nothing.
		east.Script(failovertest.InternalError())
		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"))
		for range 10 {
			assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A's own rest holds")
		}
		time.Sleep(time.Second)
		assert.Equal(t, "Hello from eastus.", ask(t, a, "gpt-4o"), "A's own probe, unclaimed")
		assert.Equal(t, 1, store.Calls(), "only the first load was tried")
		assert.Equal(t, 1, logs.count(storeDownMsg))
		assert.Contains(t, logs.bytes().String(), "level=WARN")
		assert.Contains(t, logs.bytes().String(), "storetest: store is down", "the log says why")

		sleepUntil(start.Add(retry - time.Nanosecond))
		ask(t, a, "gpt-4o")
		assert.Equal(t, 1, store.Calls(), "no store call before Retry has passed")
		time.Sleep(time.Nanosecond)
		ask(t, a, "gpt-4o")
		assert.Equal(t, 2, store.Calls(), "once Retry has passed, the store is tried again")
		assert.Equal(t, 1, logs.count(storeDownMsg), "one warning per outage, however long")

		store.SetDown(false)
		sleepUntil(start.Add(2*retry - time.Nanosecond))
		ask(t, a, "gpt-4o")
		assert.Equal(t, 2, store.Calls(), "the failed retry started a new Retry period")
		assert.Zero(t, logs.count(storeBackMsg))
		time.Sleep(time.Nanosecond)
		ask(t, a, "gpt-4o")
		assert.Equal(t, 3, store.Calls())
		assert.Equal(t, 1, logs.count(storeBackMsg), "the recovery is logged")
		assert.Contains(t, logs.bytes().String(), `level=INFO msg="failover: store reachable again; sharing resumes"`)
		for range 3 {
			time.Sleep(failover.DefaultStoreRefresh)
			ask(t, a, "gpt-4o")
		}
		assert.Equal(t, 1, logs.count(storeBackMsg), "once")

		// Sharing works again: A's next rest reaches another replica.
		east.Script(failovertest.RateLimited(30 * time.Second))
		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o-mini"))
		b := f.add(t)
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o-mini"), "B learned A's rest")
		requests := east.Requests()

		// A second outage is a second warning.
		store.SetDown(true)
		time.Sleep(failover.DefaultStoreRefresh)
		ask(t, a, "gpt-4o")
		ask(t, a, "gpt-4o")
		assert.Equal(t, 2, logs.count(storeDownMsg))
		assert.Equal(t, requests+2, east.Requests())
	})
}

func TestStoreSlowCostsOneTimeout(t *testing.T) {
	cases := []struct {
		name    string
		timing  failover.StoreTiming
		timeout time.Duration
		retry   time.Duration
	}{
		{"defaults", failover.StoreTiming{}, failover.DefaultStoreTimeout, failover.DefaultStoreRetry},
		{"set", failover.StoreTiming{Timeout: 200 * time.Millisecond, Retry: time.Minute}, 200 * time.Millisecond, time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := &blockingStore{}
				f := shareFleet(t, eastWest, 1, store, failover.WithStoreTiming(tc.timing),
					fixedBackoff(time.Hour))
				c := f.clients[0]

				start := time.Now()
				assert.Equal(t, "Hello from eastus.", ask(t, c, "gpt-4o"), "the request is served without the store")
				assert.Equal(t, tc.timeout, time.Since(start), "the load cost exactly the Timeout")
				assert.Equal(t, []time.Duration{tc.timeout}, store.waits())
				failed := time.Now()

				// For Retry the client goes on alone: a rest that would be saved costs nothing either.
				f.servers[0].Script(failovertest.InternalError())
				for range 5 {
					before := time.Now()
					assert.Equal(t, "Hello from westus.", ask(t, c, "gpt-4o"))
					assert.Zero(t, time.Since(before), "no waiting for the store during Retry")
				}
				sleepUntil(failed.Add(tc.retry - time.Nanosecond))
				before := time.Now()
				ask(t, c, "gpt-4o")
				assert.Zero(t, time.Since(before))
				assert.Len(t, store.waits(), 1)

				time.Sleep(time.Nanosecond)
				before = time.Now()
				assert.Equal(t, "Hello from westus.", ask(t, c, "gpt-4o"))
				assert.Equal(t, tc.timeout, time.Since(before), "after Retry the store is tried once more")
				assert.Equal(t, []time.Duration{tc.timeout, tc.timeout}, store.waits())
			})
		})
	}
}

// TestLoadLeavesTheCallerTime: a store call before a request's attempts takes at most half of what is left of
// the caller's deadline, so that a slow store leaves the request time for a region; and a load cut short so says
// nothing about the store.
func TestLoadLeavesTheCallerTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &blockingStore{}
		f := shareFleet(t, eastWest, 1, store)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		content, err := askCtx(ctx, f.clients[0], "gpt-4o")
		require.NoError(t, err, "the request had 5 ms left for the region")
		assert.Equal(t, "Hello from eastus.", content)
		assert.Equal(t, 1, f.servers[0].Requests(), "the region, which answers at once, was tried")
		assert.Equal(t, []time.Duration{5 * time.Millisecond}, store.waits(), "the load took half of the time left")
		assert.Equal(t, []error{context.DeadlineExceeded}, store.errs())
		shared, reachable := f.clients[0].Sharing()
		assert.True(t, shared)
		assert.True(t, reachable, "the caller's deadline is not the store's failure")
	})
}

// --- Half-open probes -------------------------------------------------------------------------------------------

// halfOpenFleet is replicas that all know eastus failed (500) and rests for exactly 10 s, at the moment the rest
// is over: the next request of any of them would be a probe.
func halfOpenFleet(t *testing.T, replicas int) *fleet {
	t.Helper()
	store := &storetest.Memory{}
	f := shareFleet(t, eastWest, replicas, store, fixedBackoff(10*time.Second))
	f.servers[0].Script(failovertest.InternalError())
	for _, c := range f.clients {
		require.Equal(t, "Hello from westus.", ask(t, c, "gpt-4o"))
	}
	require.Equal(t, 1, f.servers[0].Requests(), "the first replica's rest is shared with the others")
	time.Sleep(10 * time.Second)
	for _, c := range f.clients {
		require.Equal(t, failover.StateHalfOpen, c.Health()[0].Models[0].State)
	}
	return f
}

func TestShareOneProbeAmongReplicas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := halfOpenFleet(t, 3)
		east := f.servers[0]
		// The region holds its answer to the probe for 5 s while every replica asks, twice, at once.
		east.Script(failovertest.Slow(5*time.Second, failovertest.OK("probe answered")))
		start := time.Now()
		var mu sync.Mutex
		count := map[string]int{}
		var wg sync.WaitGroup
		for _, c := range f.clients {
			for range 2 {
				wg.Go(func() {
					content, err := askCtx(t.Context(), c, "gpt-4o")
					assert.NoError(t, err)
					if time.Since(start) == 0 {
						content += " at once"
					}
					mu.Lock()
					count[content]++
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		assert.Equal(t, 2, east.Requests(), "exactly one probe reached the recovering region")
		assert.Equal(t, map[string]int{"probe answered": 1, "Hello from westus. at once": 5}, count,
			"the others went elsewhere without waiting for the probe")
	})
}

func TestShareProbeClaimIsReleasedAfterSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := halfOpenFleet(t, 2)
		east, a, b := f.servers[0], f.clients[0], f.clients[1]
		east.Script(failovertest.OK("probe answered"))
		assert.Equal(t, "probe answered", ask(t, a, "gpt-4o"))
		// B still has its own copy of the rest, over: its next request is a probe too, which it can claim only if
		// A released its claim (else B would wait for the claim's TTL, the attempt timeout and a second).
		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"), "A's claim was released")
		assert.Equal(t, 3, east.Requests())
		assert.Empty(t, b.Health()[0].Models)
	})
}

func TestShareProbeClaimIsReleasedWhenTheCallerLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := halfOpenFleet(t, 3)
		east, a, b, c := f.servers[0], f.clients[0], f.clients[1], f.clients[2]
		east.Script(failovertest.Hang())

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := askCtx(ctx, a, "gpt-4o")
			done <- err
		}()
		synctest.Wait()
		require.Equal(t, 2, east.Requests(), "A's probe is in flight, held by the region")
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "B does not probe while A does")
		assert.Equal(t, 2, east.Requests())

		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
		// C has not asked during A's probe (B has, and passes the region over for a short poll interval): C's
		// request finds no claim and becomes the probe at once.
		start := time.Now()
		assert.Equal(t, "Hello from eastus.", ask(t, c, "gpt-4o"), "C's request becomes the probe right away")
		assert.Zero(t, time.Since(start), "not after the claim's TTL")
		assert.Equal(t, 3, east.Requests())
	})
}

// --- What is shared and what is not -----------------------------------------------------------------------------

// TestShareCredentialFaultsStayWithTheReplica: a wrong key or role, or an account out of credit, depends on the
// replica's own credentials (another replica may hold a new key); such a rest is not shared.
func TestShareCredentialFaultsStayWithTheReplica(t *testing.T) {
	cases := []struct {
		name  string
		reply failovertest.Reply
	}{
		{"401", failovertest.Unauthorized()},
		{"403", failovertest.Reply{Status: 403, Body: `{"error":{"code":"PermissionDenied","message":"The principal lacks the required data action."}}`}},
		{"insufficient_quota", failovertest.InsufficientQuota()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := &storetest.Memory{}
				f := shareFleet(t, eastWest, 2, store)
				east, a, b := f.servers[0], f.clients[0], f.clients[1]
				east.Script(tc.reply)

				assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"))
				assert.Equal(t, failover.StateResting, a.Health()[0].State, "A rests the region")
				assert.Empty(t, store.Records(), "nothing was saved")
				assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"), "B still sends to the region")
				assert.Equal(t, failover.StateServing, b.Health()[0].State)
				assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A's own rest holds")
				assert.Equal(t, 2, east.Requests())
			})
		})
	}
}

func TestShareMissingModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 2, store)
		east, a, b := f.servers[0], f.clients[0], f.clients[1]
		east.Script(failovertest.DeploymentNotFound())

		assert.Equal(t, "Hello from westus.", ask(t, a, "o3"))
		assert.Equal(t, "Hello from westus.", ask(t, b, "o3"), "B learned that eastus lacks o3")
		assert.Equal(t, 1, east.Requests())
		m := healthOf(b)[0].Models
		require.Len(t, m, 1)
		assert.Equal(t, failover.ModelHealth{Model: "o3", State: failover.StateMissing,
			Until: time.Now().Add(failover.DefaultMissingModelRest), Reason: "404: model not deployed here"}, m[0])
		assert.Equal(t, healthOf(a), healthOf(b))
		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"), "other models still go there")
	})
}

func TestShareUnreachableRegion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 2, store, fixedBackoff(time.Minute))
		east, a, b := f.servers[0], f.clients[0], f.clients[1]
		east.Script(failovertest.Disconnect())

		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"))
		assert.Equal(t, "Hello from westus.", ask(t, b, "o3"), "the whole region rests, for every model")
		assert.Equal(t, 1, east.Requests())
		h := healthOf(b)[0]
		assert.Equal(t, failover.StateResting, h.State)
		assert.Equal(t, "no answer", h.Reason)
		assert.Equal(t, time.Now().Add(time.Minute), h.Until)
	})
}

// TestShareStreamCutAfterContent: a stream that broke off after content reached the caller rests its region for
// the model as a failure, and the replicas learn it.
func TestShareStreamCutAfterContent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 2, store)
		east, a, b := f.servers[0], f.clients[0], f.clients[1]
		east.Script(failovertest.StreamFailure(2))

		stream, err := a.CreateChatCompletionStream(t.Context(), chatRequest())
		require.NoError(t, err)
		text, err := failovertest.ReadStream(stream)
		require.ErrorIs(t, err, failover.ErrStreamCut)
		assert.NotEmpty(t, text, "content reached the caller before the cut")
		require.NoError(t, stream.Close())

		records := store.Records()
		require.Len(t, records, 1)
		assert.Equal(t, failover.RestFailing, records[0].Kind)
		assert.Equal(t, "gpt-4o", records[0].Model)
		assert.Equal(t, 200, records[0].Status)
		assert.True(t, strings.HasPrefix(records[0].Backend, "eastus@"), records[0].Backend)

		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "B learned the cut")
		assert.Equal(t, 1, east.Requests())
		m := healthOf(b)[0].Models
		require.Len(t, m, 1)
		assert.Equal(t, failover.StateResting, m[0].State)
		assert.Equal(t, "200 but the answer broke off or was malformed", m[0].Reason)
	})
}

// TestShareRecordsHoldNoSecret: what a store keeps names a backend by its name and a digest of its endpoint; no
// key, URL or host is in it.
func TestShareRecordsHoldNoSecret(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		servers := startRegions(t, []string{"eastus", "westus", "swedencentral"},
			failovertest.OnNetwork(network), failovertest.WithKey(secretKey))
		store := &storetest.Memory{}
		c := replica(t, regionsOf(servers...), store, failover.WithHTTPClient(network.Client()), fixedBackoff(time.Minute))
		east, west := servers[0], servers[1]
		east.Script(failovertest.RateLimited(30*time.Second), failovertest.DeploymentNotFound())
		west.Script(failovertest.InternalError(), failovertest.Disconnect())

		assert.Equal(t, "Hello from swedencentral.", ask(t, c, "gpt-4o"))
		assert.Equal(t, "Hello from swedencentral.", ask(t, c, "o3"))

		records := store.Records()
		kinds := map[string]bool{}
		backend := regexp.MustCompile(`^(eastus|westus)@[0-9a-f]{16}$`)
		for _, r := range records {
			kinds[r.Kind] = true
			assert.Regexp(t, backend, r.Backend)
		}
		assert.Equal(t, map[string]bool{failover.RestThrottled: true, failover.RestMissing: true,
			failover.RestFailing: true, failover.RestUnreachable: true}, kinds)
		data, err := json.Marshal(records)
		require.NoError(t, err)
		dump := fmt.Sprintf("%#v %s", records, data)
		for _, s := range servers {
			u, err := url.Parse(s.URL)
			require.NoError(t, err)
			for _, secret := range []string{s.Key, s.URL, u.Host, u.Hostname()} {
				assert.NotContains(t, dump, secret)
			}
		}
		assert.NotContains(t, dump, secretKey[:8], "not even part of the key")
	})
}

// TestShareSameNameOtherEndpointIsNotShared: two programs may give one name to different resources; a backend is
// known in the store by its endpoint too, so their rests stay apart.
func TestShareSameNameOtherEndpointIsNotShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		servers := startRegions(t, []string{"eastus", "westus", "other"}, failovertest.OnNetwork(network))
		east, west, other := servers[0], servers[1], servers[2]
		store := &storetest.Memory{}
		a := replica(t, regionsOf(east, west), store, failover.WithHTTPClient(network.Client()))
		renamed := regionsOf(other, west)
		renamed[0].Name = "eastus" // a different resource with the same name
		b := replica(t, renamed, store, failover.WithHTTPClient(network.Client()))
		east.Script(failovertest.RateLimited(30 * time.Second))

		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"))
		assert.Equal(t, "Hello from other.", ask(t, b, "gpt-4o"), "B's eastus is another resource")
		assert.Empty(t, healthOf(b)[0].Models)
	})
}

// --- Configuration ----------------------------------------------------------------------------------------------

func TestStoreTimingMustNotBeNegative(t *testing.T) {
	cases := []struct {
		name   string
		timing failover.StoreTiming
		fields []string
	}{
		{"timeout", failover.StoreTiming{Timeout: -time.Millisecond}, []string{"WithStoreTiming(Timeout)"}},
		{"retry", failover.StoreTiming{Retry: -time.Second}, []string{"WithStoreTiming(Retry)"}},
		{"both", failover.StoreTiming{Timeout: -1, Retry: -1}, []string{"WithStoreTiming(Timeout)", "WithStoreTiming(Retry)"}},
		{"negative refresh is allowed", failover.StoreTiming{Refresh: -1}, nil},
	}
	regions := []failover.Region{{Name: "eastus", Endpoint: "https://eastus.openai.azure.com", APIKey: secretKey}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := failover.New(regions, failover.WithStore(&storetest.Memory{}), failover.WithStoreTiming(tc.timing))
			if tc.fields == nil {
				require.NoError(t, err)
				require.NotNil(t, c)
				t.Cleanup(c.CloseIdleConnections)
				return
			}
			assert.Nil(t, c, "nothing is returned with an error")
			require.ErrorIs(t, err, failover.ErrConfig)
			assert.Equal(t, tc.fields, configFields(err))
		})
	}
}

func TestStoreURLWithoutOpenerIsAConfigError(t *testing.T) {
	isolateEnv(t)
	setRegionsEnv(t, startRegions(t, []string{"eastus"})...)
	t.Setenv("FAILOVER_REDIS_URL", "redis://:hunter2-Pa55@redis.example:6379/0")
	c, err := failover.NewFromEnv()
	assert.Nil(t, c)
	var ce *failover.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "FAILOVER_REDIS_URL", ce.Field)
	assert.Equal(t, failover.EnvRedisURL, ce.Field)
	assert.NotContains(t, err.Error(), "hunter2")
}

func TestStoreOpenerFromEnv(t *testing.T) {
	isolateEnv(t)
	servers := startRegions(t, eastWest)
	setRegionsEnv(t, servers...)
	const storeURL = "redis://:hunter2-Pa55@redis.example:6379/0"
	t.Setenv(failover.EnvRedisURL, storeURL)
	t.Setenv(failover.EnvRedisPrefix, "myapp-prod")
	store := &closingStore{}
	var opener recordingOpener
	c, err := failover.NewFromEnv(failover.WithStoreOpener(opener.open(store, nil)))
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Equal(t, []string{storeURL + " myapp-prod"}, opener.calls(), "the opener got the URL and the prefix")

	servers[0].Script(failovertest.RateLimited(30 * time.Second))
	content, err := c.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from westus.", content)
	records := store.Records()
	require.Len(t, records, 1, "the client shares through the opened store")
	assert.True(t, strings.HasPrefix(records[0].Backend, "eastus@"), records[0].Backend)

	assert.Zero(t, store.closed())
	require.NoError(t, c.Close())
	assert.Equal(t, 1, store.closed(), "the client owns the store it opened")

	// After Close the client works alone: no call to the closed store, no warning about it.
	calls := store.Calls()
	content, err = c.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from westus.", content, "its own rest still holds")
	assert.Equal(t, calls, store.Calls())
	shared, reachable := c.Sharing()
	assert.False(t, shared)
	assert.False(t, reachable)
	require.NoError(t, c.Close())
	assert.Equal(t, 1, store.closed(), "a second Close closes nothing again")
}

func TestStoreCloseReportsTheStoresError(t *testing.T) {
	isolateEnv(t)
	setRegionsEnv(t, startRegions(t, []string{"eastus"})...)
	t.Setenv(failover.EnvRedisURL, "redis://redis.example:6379")
	store := &closingStore{err: errors.New("close failed")}
	var opener recordingOpener
	c, err := failover.NewFromEnv(failover.WithStoreOpener(opener.open(store, nil)))
	require.NoError(t, err)
	assert.EqualError(t, c.Close(), "close failed")
}

func TestStoreGivenWinsOverTheEnvironment(t *testing.T) {
	isolateEnv(t)
	servers := startRegions(t, eastWest)
	setRegionsEnv(t, servers...)
	t.Setenv(failover.EnvRedisURL, "redis://:hunter2-Pa55@redis.example:6379/0")
	given := &closingStore{}
	var opener recordingOpener
	c, err := failover.NewFromEnv(failover.WithStore(given), failover.WithStoreOpener(opener.open(&closingStore{}, nil)))
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Empty(t, opener.calls(), "the opener is not called")

	servers[0].Script(failovertest.RateLimited(30 * time.Second))
	_, err = c.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Len(t, given.Records(), 1, "the client shares through the given store")
	require.NoError(t, c.Close())
	assert.Zero(t, given.closed(), "the caller keeps ownership of a store given with WithStore")
}

func TestStoreGivenToNewIsNotClosed(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	given := &closingStore{}
	var opener recordingOpener
	c := newClient(t, regionsOf(servers...), failover.WithStore(given), failover.WithStoreOpener(opener.open(&closingStore{}, nil)))
	_, err := c.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Positive(t, given.Calls())
	require.NoError(t, c.Close())
	assert.Zero(t, given.closed())
	assert.Empty(t, opener.calls(), "New ignores WithStoreOpener")
}

func TestStoreOpenerIsNotCalledWithABadConfig(t *testing.T) {
	isolateEnv(t)
	setRegionsEnv(t, startRegions(t, []string{"eastus"})...)
	t.Setenv(failover.EnvRedisURL, "redis://redis.example:6379")
	var opener recordingOpener
	c, err := failover.NewFromEnv(failover.WithStoreOpener(opener.open(&closingStore{}, nil)),
		failover.WithStoreTiming(failover.StoreTiming{Retry: -1}))
	assert.Nil(t, c)
	assert.Equal(t, []string{"WithStoreTiming(Retry)"}, configFields(err))
	assert.Empty(t, opener.calls(), "no store is opened (and left open) for a client that is not built")
}

func TestStoreOpenerErrorDoesNotLeakThePassword(t *testing.T) {
	const password = "hunter2-Pa55"
	isolateEnv(t)
	setRegionsEnv(t, startRegions(t, []string{"eastus"})...)
	t.Setenv(failover.EnvRedisURL, "redis://:"+password+"@redis.example:6379/0")
	var opener recordingOpener
	// A careless opener that quotes the URL it was given.
	c, err := failover.NewFromEnv(failover.WithStoreOpener(opener.open(nil, quoteURL)))
	assert.Nil(t, c)
	var ce *failover.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, failover.EnvRedisURL, ce.Field)
	assert.Contains(t, err.Error(), "connection refused", "the opener's reason is kept")
	assert.NotContains(t, err.Error(), password)
}

// TestStoreOpenerErrorHidesAPercentEncodedPassword: a password with characters that must be escaped in a URL
// (here "/", written %2F) is redacted as it was written in FAILOVER_REDIS_URL, not only decoded.
func TestStoreOpenerErrorHidesAPercentEncodedPassword(t *testing.T) {
	isolateEnv(t)
	setRegionsEnv(t, startRegions(t, []string{"eastus"})...)
	t.Setenv(failover.EnvRedisURL, "redis://:hunter2%2FPa55@redis.example:6379/0")
	var opener recordingOpener
	_, err := failover.NewFromEnv(failover.WithStoreOpener(opener.open(nil, quoteURL)))
	require.ErrorIs(t, err, failover.ErrConfig)
	assert.NotContains(t, err.Error(), "hunter2")
}

// TestStoreOpenerErrorHidesThePasswordOfAnUnparsableURL: when FAILOVER_REDIS_URL does not parse (an unescaped
// "%" in the password, common in generated passwords), an opener returning url.Parse's own error, which quotes
// the whole URL, still leaks no password.
func TestStoreOpenerErrorHidesThePasswordOfAnUnparsableURL(t *testing.T) {
	isolateEnv(t)
	setRegionsEnv(t, startRegions(t, []string{"eastus"})...)
	t.Setenv(failover.EnvRedisURL, "redis://:hunter2%zzPa55@redis.example:6379/0")
	parse := func(raw, _ string) (failover.Store, error) {
		if _, err := url.Parse(raw); err != nil {
			return nil, err
		}
		return &storetest.Memory{}, nil
	}
	_, err := failover.NewFromEnv(failover.WithStoreOpener(parse))
	require.ErrorIs(t, err, failover.ErrConfig)
	assert.NotContains(t, err.Error(), "hunter2")
}

// TestFailedLoadIsRetriedAfterRetry: a load that failed does not count as a refresh. When Refresh is longer than
// Retry, a replica whose load failed loads again once Retry has passed, not a whole Refresh later.
func TestFailedLoadIsRetriedAfterRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &storetest.Memory{}
		f := shareFleet(t, eastWest, 1, store)
		east, a := f.servers[0], f.clients[0]
		b := f.add(t, failover.WithStoreTiming(failover.StoreTiming{Refresh: 10 * time.Second, Retry: time.Second}))

		ask(t, b, "gpt-4o") // B's copy is from now
		time.Sleep(10 * time.Second)
		store.SetDown(true)
		ask(t, b, "gpt-4o") // B's copy is stale: it loads, and the load fails
		store.SetDown(false)

		east.Script(failovertest.RateLimited(time.Minute))
		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A shares a rest")
		time.Sleep(time.Second)
		calls := store.Calls()
		// Retry has passed and B's copy is 11 s old: B should load and learn A's rest.
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "B did not load: it sent to the resting region")
		assert.Equal(t, calls+1, store.Calls())
	})
}

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

// --- Helpers ----------------------------------------------------------------------------------------------------

// shareFleet starts fake regions on an in-memory network and n replicas that reach them and share store. The
// replicas never wait for a rest (WithMaxWait(0)), so a test sees where each request went at once.
func shareFleet(t *testing.T, names []string, n int, store failover.Store, opts ...failover.Option) *fleet {
	t.Helper()
	network := failovertest.NewNetwork()
	t.Cleanup(network.Close)
	servers := startRegions(t, names, failovertest.OnNetwork(network))
	f := &fleet{network: network, servers: servers, store: store}
	for range n {
		f.clients = append(f.clients, f.add(t, opts...))
	}
	return f
}

// fleet is fake regions on an in-memory network and the replicas in front of them that share store.
type fleet struct {
	network *failovertest.Network
	servers []*failovertest.Server
	clients []*failover.Client
	store   failover.Store
}

// add builds one more replica, with opts, that is not in f.clients.
func (f *fleet) add(t *testing.T, opts ...failover.Option) *failover.Client {
	t.Helper()
	return replica(t, regionsOf(f.servers...), f.store, append([]failover.Option{failover.WithHTTPClient(f.network.Client())}, opts...)...)
}

// replica builds a client that shares store, never waits for a rest, and closes its idle connections at the end.
// opts come last: they override the defaults here.
func replica(t *testing.T, regions []failover.Region, store failover.Store, opts ...failover.Option) *failover.Client {
	t.Helper()
	return newClient(t, regions, append([]failover.Option{failover.WithStore(store), failover.WithMaxWait(0)}, opts...)...)
}

// ask sends one chat completion for model and returns its text; the request must succeed.
func ask(t *testing.T, c *failover.Client, model string) string {
	t.Helper()
	content, err := askCtx(t.Context(), c, model)
	require.NoError(t, err)
	return content
}

// askCtx is ask for goroutines other than the test's, which must not call require.
func askCtx(ctx context.Context, c *failover.Client, model string) (string, error) {
	resp, err := c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: model, Messages: hello()})
	if err != nil {
		return "", err
	}
	return resp.Choices[0].Message.Content, nil
}

// healthOf is Client.Health without latency, which each replica measures for itself.
func healthOf(c *failover.Client) []failover.RegionHealth {
	h := c.Health()
	for i := range h {
		h[i].Latency = 0
	}
	return h
}

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// setRegionsEnv configures one region per server in the process environment, numbered from 1.
func setRegionsEnv(t *testing.T, servers ...*failovertest.Server) {
	t.Helper()
	for i, s := range servers {
		n := fmt.Sprint(i + 1)
		t.Setenv("AZURE_OPENAI_ENDPOINT_"+n, s.URL)
		t.Setenv("AZURE_OPENAI_API_KEY_"+n, s.Key)
		t.Setenv("AZURE_OPENAI_REGION_"+n, s.Name)
	}
	t.Setenv("FAILOVER_MODEL", "gpt-4o")
}

const (
	storeDownMsg = "failover: store unreachable; going on with this client's own state"
	storeBackMsg = "failover: store reachable again; sharing resumes"
)

// blockingStore is a store that never answers: every call waits until its context ends, and records how long
// that took and why.
type blockingStore struct {
	mu      sync.Mutex
	waited  []time.Duration
	reasons []error
}

var _ failover.Store = (*blockingStore)(nil)

func (s *blockingStore) block(ctx context.Context) error {
	start := time.Now()
	<-ctx.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waited = append(s.waited, time.Since(start))
	s.reasons = append(s.reasons, ctx.Err())
	return ctx.Err()
}

func (s *blockingStore) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waited...)
}

func (s *blockingStore) errs() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.reasons...)
}

func (s *blockingStore) Load(ctx context.Context, _ []string, _ time.Time) ([]failover.Record, error) {
	return nil, s.block(ctx)
}

func (s *blockingStore) Save(ctx context.Context, _ failover.Record, _ time.Time) error {
	return s.block(ctx)
}

func (s *blockingStore) Claim(ctx context.Context, _ string, _ []string, _ string, _ time.Duration, _ time.Time) (bool, []failover.Record, error) {
	return false, nil, s.block(ctx)
}

func (s *blockingStore) Release(ctx context.Context, _ string, _ []string, _ string) error {
	return s.block(ctx)
}

// closingStore is a Memory that is an io.Closer too, and counts its closes.
type closingStore struct {
	storetest.Memory
	err    error // what Close returns
	mu     sync.Mutex
	closes int
}

func (s *closingStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closes++
	return s.err
}

func (s *closingStore) closed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closes
}

// recordingOpener is a StoreOpener that records its calls as "url prefix".
type recordingOpener struct {
	mu   sync.Mutex
	seen []string
}

// open returns an opener that gives store, or the error fail makes of the URL when fail is not nil.
func (o *recordingOpener) open(store failover.Store, fail func(url string) error) failover.StoreOpener {
	return func(url, prefix string) (failover.Store, error) {
		o.mu.Lock()
		o.seen = append(o.seen, url+" "+prefix)
		o.mu.Unlock()
		if fail != nil {
			return nil, fail(url)
		}
		return store, nil
	}
}

func (o *recordingOpener) calls() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen...)
}

// quoteURL is the error of an opener that quotes the URL it could not open.
func quoteURL(url string) error { return fmt.Errorf("dial %s: connection refused", url) }
