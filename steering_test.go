package failover_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests drive quota steering end to end: fake regions whose answers carry x-ratelimit-remaining-* headers,
// a real Client, real HTTP.

// steerBudget is the completion budget of steerBig: far more tokens than the regions below say they have left.
const steerBudget = 500

// steerSmall is a request of a few tokens (its prompt only: about 18).
func steerSmall() openai.ChatCompletionRequest { return chatRequest() }

// steerBig is a request of about 520 tokens.
func steerBig() openai.ChatCompletionRequest {
	req := chatRequest()
	req.MaxCompletionTokens = steerBudget
	return req
}

// steerLeft answers 200 saying that tokens remain (and 100 requests); limit, when not empty, is the tokens limit.
func steerLeft(tokens, limit string) failovertest.Reply {
	h := http.Header{"X-Ratelimit-Remaining-Requests": {"100"}, "X-Ratelimit-Remaining-Tokens": {tokens}}
	if limit != "" {
		h.Set("X-Ratelimit-Limit-Tokens", limit)
	}
	return failovertest.Reply{Header: h}
}

// assertNo429 checks that no server answered 429.
func assertNo429(t *testing.T, servers ...*failovertest.Server) {
	t.Helper()
	for _, s := range servers {
		assert.Zero(t, s.Statuses()[http.StatusTooManyRequests], "%s answered 429", s.Name)
	}
}

func TestSteeringAvoidsARegionWithoutRoom(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	// 100 tokens left of 600 a minute: room for a small request, none for a big one until the news is a minute old.
	east.SetDefault(steerLeft("100", "600"))
	client := newClient(t, regionsOf(servers...), failover.WithStrategy(failover.StrategyOrdered))

	assertServedBy(t, steerSend(t, client, steerSmall()), "eastus", "nothing is known yet: the first region")
	require.Equal(t, 1, east.Requests())
	calls := east.Calls()
	require.Len(t, calls, 1)
	assert.Less(t, (len(calls[0].Body)+3)/4, 100, "the small request fits in what is left")

	attempts := steerSend(t, client, steerBig())
	assertServedBy(t, attempts, "westus", "the big request goes where it has room")
	assert.Equal(t, 1, east.Requests(), "eastus was not asked for the big request")
	require.Equal(t, 1, west.Requests())
	assert.Contains(t, string(west.Calls()[0].Body), `"max_completion_tokens":500`)
	assertNo429(t, east, west)

	assertServedBy(t, steerSend(t, client, steerSmall()), "eastus", "a request that fits still goes to eastus")
	assert.Equal(t, 2, east.Requests())
	assert.Equal(t, 1, west.Requests())
}

func TestSteeringTurnedOffSendsToTheFirstRegion(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	east.SetDefault(steerLeft("0", "600"))
	client := newClient(t, regionsOf(servers...), failover.WithQuotaSteering(false))

	assertServedBy(t, steerSend(t, client, steerSmall()), "eastus")
	assertServedBy(t, steerSend(t, client, steerBig()), "eastus", "without steering the order is the configured one")
	assert.Equal(t, 2, east.Requests())
	assert.Zero(t, west.Requests())
}

func TestSteeringReturnsAfterAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		east, west := servers[0], servers[1]
		east.SetDefault(steerLeft("0", "")) // no limit header: it is learned as small as 0 + the request's cost

		assertServedBy(t, steerSend(t, client, steerSmall()), "eastus")
		assertServedBy(t, steerSend(t, client, steerBig()), "westus")

		time.Sleep(30 * time.Second)
		assertServedBy(t, steerSend(t, client, steerBig()), "westus", "30 s later eastus still has no room")
		assert.Equal(t, 1, east.Requests())

		time.Sleep(31 * time.Second) // a minute and a second after the request eastus last answered
		assertServedBy(t, steerSend(t, client, steerBig()), "eastus", "what eastus said is forgotten")
		assert.Equal(t, 2, east.Requests())
		assert.Equal(t, 2, west.Requests())
		assertNo429(t, east, west)
	})
}

func TestSteeringPrefersRoomInTheNextPriority(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus", "northeurope"})
	east, west, north := servers[0], servers[1], servers[2]
	east.SetDefault(steerLeft("100", "600"))
	west.SetDefault(steerLeft("100", "600"))
	regions := regionsOf(servers...)
	regions[0].Priority, regions[1].Priority, regions[2].Priority = 0, 0, 1
	client := newClient(t, regions)

	assertServedBy(t, steerSend(t, client, steerSmall()), "eastus")
	// westus has not been heard of: it counts as having room, and comes before priority 1.
	assertServedBy(t, steerSend(t, client, steerBig()), "westus")
	// Now neither region of priority 0 has room for it: priority 1 has.
	attempts := steerSend(t, client, steerBig())
	assertServedBy(t, attempts, "northeurope", "room in priority 1 before no room in priority 0")
	assert.Equal(t, 1, east.Requests())
	assert.Equal(t, 1, west.Requests())
	assert.Equal(t, 1, north.Requests())
	assertNo429(t, east, west, north)
	// A small request still fits in priority 0.
	assertServedBy(t, steerSend(t, client, steerSmall()), "eastus")
}

// steerTrace records a request's attempts and waits.
type steerTrace struct {
	recorder
	waits []time.Duration
}

func (r *steerTrace) context(ctx context.Context) context.Context {
	return failover.WithTrace(ctx, &failover.Trace{
		AttemptDone: func(a failover.Attempt) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.attempts = append(r.attempts, a)
		},
		Wait: func(d time.Duration) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.waits = append(r.waits, d)
		},
	})
}

func TestSteeringKeepsTheFallbackForLast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		servers := startRegions(t, []string{"eastus", "westus"}, failovertest.OnNetwork(network))
		east, west := servers[0], servers[1]
		oai := failovertest.NewOpenAI(failovertest.OnNetwork(network))
		t.Cleanup(oai.Close)
		client := newClient(t, regionsOf(servers...), failover.WithHTTPClient(network.Client()),
			failover.WithOpenAIFallback(oai.Key, oai.URL))
		east.SetDefault(steerLeft("0", ""))      // no room, of a limit learned as about 18 tokens
		west.SetDefault(steerLeft("200", "600")) // no room for a big request

		assertServedBy(t, steerSend(t, client, steerSmall()), "eastus")
		time.Sleep(20 * time.Second)
		assertServedBy(t, steerSend(t, client, steerSmall()), "westus", "eastus has no room even for a small request")

		// Neither region has room for a big request. eastus's news is older, so it has room sooner (in 40 s,
		// westus in 60 s): it comes first, and the fallback last, without waiting (a fallback is there).
		start := time.Now()
		var rec steerTrace
		_, err := client.CreateChatCompletion(rec.context(t.Context()), steerBig())
		require.NoError(t, err)
		assertServedBy(t, rec.list(), "eastus", "the region that has room soonest, not the fallback")
		assert.Empty(t, rec.waits)
		assert.Zero(t, time.Since(start))
		for range 2 {
			attempts := steerSend(t, client, steerBig())
			require.Len(t, attempts, 1)
			assert.NotEqual(t, failover.OpenAIFallbackName, attempts[0].Region)
		}
		assert.Zero(t, oai.Requests(), "the fallback is for when every region is out, not short")
		assertNo429(t, east, west)
	})
}

// TestSteeringWaitsForRoomWithoutAFallback: when no region has room and there is no fallback, a request waits
// for the first region to have room, as for a rest, if that is within WithMaxWait; otherwise it is sent at once.
func TestSteeringWaitsForRoomWithoutAFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		east, west := servers[0], servers[1]
		east.SetDefault(steerLeft("0", "600"))
		west.SetDefault(steerLeft("0", "600"))
		assertServedBy(t, steerSend(t, client, steerSmall()), "eastus")
		assertServedBy(t, steerSend(t, client, steerSmall()), "westus")

		// Room comes back in a minute, more than the default WithMaxWait (10 s): no wait.
		var rec steerTrace
		start := time.Now()
		_, err := client.CreateChatCompletion(rec.context(t.Context()), steerBig())
		require.NoError(t, err)
		assert.Empty(t, rec.waits)
		assert.Zero(t, time.Since(start))
		assertServedBy(t, rec.list(), "eastus", "sent at once, to the first region")

		// 55 s later, eastus's sends leave the minute in 5 s: the request waits for that.
		time.Sleep(55 * time.Second)
		rec = steerTrace{}
		start = time.Now()
		_, err = client.CreateChatCompletion(rec.context(t.Context()), steerBig())
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{5 * time.Second}, rec.waits)
		assert.Equal(t, 5*time.Second, time.Since(start))
		assertServedBy(t, rec.list(), "eastus")
		assertNo429(t, east, west)
	})
}

func TestSteeringFromTheEnvironment(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  string // the region that serves the big request
	}{
		{"false", "eastus"},
		{" FALSE ", "eastus"},
		{"0", "eastus"},
		{"true", "westus"},
		{"", "westus"}, // default: on
	} {
		t.Run(tc.value, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			east, west := servers[0], servers[1]
			east.SetDefault(steerLeft("0", "600"))
			isolateEnv(t)
			t.Setenv(failover.EnvEndpoint+"_1", east.URL)
			t.Setenv(failover.EnvAPIKey+"_1", east.Key)
			t.Setenv(failover.EnvRegionName+"_1", east.Name)
			t.Setenv(failover.EnvEndpoint+"_2", west.URL)
			t.Setenv(failover.EnvAPIKey+"_2", west.Key)
			t.Setenv(failover.EnvRegionName+"_2", west.Name)
			t.Setenv(failover.EnvModel, "gpt-4o")
			t.Setenv(failover.EnvQuotaSteering, tc.value)
			client, err := failover.NewFromEnv()
			require.NoError(t, err)
			t.Cleanup(client.CloseIdleConnections)

			assertServedBy(t, steerSend(t, client, steerSmall()), "eastus")
			assertServedBy(t, steerSend(t, client, steerBig()), tc.want)
			if tc.want == "eastus" {
				assert.Equal(t, []int{2, 0}, []int{east.Requests(), west.Requests()})
			} else {
				assert.Equal(t, []int{1, 1}, []int{east.Requests(), west.Requests()})
			}
		})
	}
}

func TestSteeringEnvironmentRejectsANonBoolean(t *testing.T) {
	for _, value := range []string{"maybe", "yes", "on", "2"} {
		t.Run(value, func(t *testing.T) {
			isolateEnv(t)
			t.Setenv(failover.EnvEndpoint+"_1", "https://one.openai.azure.com")
			t.Setenv(failover.EnvAPIKey+"_1", secretKey)
			t.Setenv(failover.EnvEndpoint+"_2", "https://two.openai.azure.com")
			t.Setenv(failover.EnvAPIKey+"_2", secretKey)
			t.Setenv(failover.EnvQuotaSteering, value)
			client, err := failover.NewFromEnv()
			assert.Nil(t, client)
			require.ErrorIs(t, err, failover.ErrConfig)
			assert.ErrorContains(t, err, "FAILOVER_QUOTA_STEERING")
			var ce *failover.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, failover.EnvQuotaSteering, ce.Field)
			assert.NotContains(t, err.Error(), secretKey)
		})
	}
}

// TestSteeringDoesNotOutlastA429: a 429, the region's first answer, rests the region for its Retry-After; its
// x-ratelimit-remaining-tokens: 0 (with no limit known) does not keep the region away once the rest is over.
func TestSteeringDoesNotOutlastA429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		east, west := servers[0], servers[1]
		east.Script(failovertest.RateLimited(5 * time.Second))

		attempts := steerSend(t, client, steerBig())
		require.Len(t, attempts, 2)
		assert.Equal(t, "eastus", attempts[0].Region)
		assert.Equal(t, http.StatusTooManyRequests, attempts[0].Status)
		assert.Equal(t, failover.OutcomeFailedOver, attempts[0].Outcome)
		assert.Equal(t, "0", attempts[0].Header.Get("X-Ratelimit-Remaining-Tokens"), "the 429 said nothing is left")
		assert.Equal(t, "westus", attempts[1].Region)

		time.Sleep(2 * time.Second)
		assertServedBy(t, steerSend(t, client, steerBig()), "westus", "eastus rests")

		time.Sleep(4 * time.Second) // the Retry-After is over
		assertServedBy(t, steerSend(t, client, steerBig()), "eastus", "no steering away after the rest")
		assertServedBy(t, steerSend(t, client, steerBig()), "eastus")
		assert.Equal(t, 3, east.Requests())
		assert.Equal(t, 2, west.Requests())
		assert.Equal(t, map[int]int{429: 1, 200: 2}, east.Statuses())
	})
}

// TestSteeringAfterA429OfARegionWithAKnownLimit: as TestSteeringDoesNotOutlastA429, but the region's limit was
// known from an earlier answer, so the 429's x-ratelimit-remaining-tokens: 0 could count as news.
func TestSteeringAfterA429OfARegionWithAKnownLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		east, west := servers[0], servers[1]
		east.SetDefault(steerLeft("59000", "60000"))
		assertServedBy(t, steerSend(t, client, steerSmall()), "eastus")

		east.Script(failovertest.RateLimited(5 * time.Second))
		attempts := steerSend(t, client, steerBig())
		require.Len(t, attempts, 2)
		assert.Equal(t, http.StatusTooManyRequests, attempts[0].Status)
		assert.Equal(t, "westus", attempts[1].Region)

		time.Sleep(6 * time.Second) // the Retry-After is over
		attempts = steerSend(t, client, steerBig())
		require.Len(t, attempts, 1)
		assertServedBy(t, attempts, "eastus", "no steering away after the rest: its Retry-After has the last word")
		assert.Equal(t, 3, east.Requests())
		assert.Equal(t, 1, west.Requests())
	})
}

// TestSteeringConcurrentRequests: the answers' counts are placed against what was sent since, so requests
// that are in flight when an answer comes stay charged, and a burst spills over to the next region before any
// 429. Here eastus says, after each request, that it has room for about one more big request.
func TestSteeringConcurrentRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		east, west := servers[0], servers[1]
		east.SetDefault(steerLeft("600", "60000"))
		assertServedBy(t, steerSend(t, client, steerSmall()), "eastus")

		// Three big requests, each sent while the others are in flight, each answered after a second: by the
		// count, only the first fits in eastus.
		east.SetDefault(failovertest.Slow(time.Second, steerLeft("75", "60000")))
		west.SetDefault(failovertest.Slow(time.Second, failovertest.Reply{}))
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := client.CreateChatCompletion(context.Background(), steerBig())
				errs <- err
			}()
			synctest.Wait() // the request has reached its region and waits for the answer
		}
		for range 3 {
			assert.NoError(t, <-errs)
		}
		assert.Equal(t, 2, east.Requests(), "one big request fitted in eastus")
		assert.Equal(t, 2, west.Requests(), "the two others went to westus")
		assertNo429(t, east, west)
	})
}

// TestSteeringFirstAnswerCountsRequestsInFlight: two big requests go to eastus before anything is known; the
// first one's answer says 600 tokens are left, which does not count the second, still in flight. A third big
// request, sent then, has about 75 tokens of room in eastus and should go to westus.
func TestSteeringFirstAnswerCountsRequestsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		east, west := servers[0], servers[1]
		east.Script(failovertest.Slow(time.Second, steerLeft("600", "60000")),
			failovertest.Slow(2*time.Second, steerLeft("75", "60000")))
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := client.CreateChatCompletion(context.Background(), steerBig())
				errs <- err
			}()
			synctest.Wait()
		}
		require.NoError(t, <-errs) // the first answer, at 1 s
		require.Equal(t, 2, east.Requests())

		var rec recorder
		_, err := client.CreateChatCompletion(rec.context(t.Context()), steerBig())
		require.NoError(t, err)
		require.NoError(t, <-errs)
		assertServedBy(t, rec.list(), "westus")
		assert.Equal(t, 2, east.Requests())
		assert.Equal(t, 1, west.Requests())
	})
}

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
