package failover_test

import (
	"context"
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

// These tests run in synctest bubbles: time is fake, so rests of a minute pass at once and exactly.

func TestRetryAfterSendsOneRequestToTheThrottledRegion(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].SetDefault(failovertest.RateLimited(60 * time.Second))
	client := newClient(t, regionsOf(servers...))

	for range 100 {
		content, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		require.Equal(t, "Hello from westus.", content)
	}
	assert.Equal(t, 1, servers[0].Requests(), "the 429's retry-after keeps every later request away")
	assert.Equal(t, 100, servers[1].Requests())
}

func TestRestEndsWhenRetryAfterPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		servers[0].Script(failovertest.RateLimited(30 * time.Second))

		var rec recorder
		_, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, 30*time.Second, rec.first().Rest)
		assert.Equal(t, "0", rec.first().Header.Get("X-Ratelimit-Remaining-Tokens"), "the answer's headers are kept")
		rested := time.Now()

		time.Sleep(29 * time.Second)
		content, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", content, "still resting")
		h := client.Health()[0]
		require.Len(t, h.Models, 1)
		assert.Equal(t, failover.ModelHealth{Model: "gpt-4o", State: failover.StateResting,
			Until: rested.Add(30 * time.Second), Reason: "429 rate limited"}, h.Models[0])
		assert.Equal(t, failover.StateServing, h.State, "a 429 rests one model, not the region")

		time.Sleep(time.Second)
		content, err = client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", content, "a 429's rest ends without a probe: full traffic again")
		assert.Empty(t, client.Health()[0].Models)
	})
}

func TestHalfOpenProbeAfterErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, fixedBackoff(10*time.Second))
		servers[0].Script(failovertest.InternalError())

		_, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		time.Sleep(10 * time.Second)
		h := client.Health()[0]
		require.Len(t, h.Models, 1)
		assert.Equal(t, failover.StateHalfOpen, h.Models[0].State)
		assert.Equal(t, "500 Internal Server Error", h.Models[0].Reason)

		// The probe is held up; while it is in flight every other request passes eastus over.
		servers[0].Script(failovertest.Slow(5*time.Second, failovertest.OK("probe answered")))
		probe := make(chan string, 1)
		go func() {
			content, _ := client.ChatCompletion(t.Context(), hello())
			probe <- content
		}()
		synctest.Wait()
		assert.Equal(t, failover.StateProbing, client.Health()[0].Models[0].State)
		for range 3 {
			content, err := client.ChatCompletion(t.Context(), hello())
			require.NoError(t, err)
			assert.Equal(t, "Hello from westus.", content)
		}
		assert.Equal(t, "probe answered", <-probe)
		assert.Equal(t, 2, servers[0].Requests(), "one failure, one probe")
		assert.Empty(t, client.Health()[0].Models, "the probe's success closes the rest")

		content, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", content)
	})
}

func TestFailedProbeRestsLonger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failures []int
		var mu sync.Mutex
		backoff := failover.WithBackoff(func(n int) time.Duration {
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, n)
			return time.Duration(n) * 10 * time.Second
		})
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, backoff)
		servers[0].SetDefault(failovertest.Unavailable())

		var rests []time.Duration
		trace := &failover.Trace{AttemptDone: func(a failover.Attempt) {
			if a.Region == "eastus" {
				rests = append(rests, a.Rest)
			}
		}}
		ctx := failover.WithTrace(t.Context(), trace)
		for _, wait := range []time.Duration{0, 10 * time.Second, 20 * time.Second} {
			time.Sleep(wait)
			_, err := client.ChatCompletion(ctx, hello())
			require.NoError(t, err)
		}
		assert.Equal(t, []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second}, rests)
		assert.Equal(t, []int{1, 2, 3}, failures, "each failed probe counts one more consecutive failure")
		assert.Equal(t, 3, servers[0].Requests())
	})
}

func TestWaitsForTheSoonestRestWithinTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithMaxWait(10*time.Second))
		servers[0].Script(failovertest.RateLimited(8 * time.Second))
		servers[1].Script(failovertest.RateLimited(3 * time.Second))

		var waits []time.Duration
		var rec recorder
		ctx := rec.context(t.Context())
		ctx = failover.WithTrace(ctx, &failover.Trace{
			AttemptDone: failover.ContextTrace(ctx).AttemptDone,
			Wait:        func(d time.Duration) { waits = append(waits, d) },
		})
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		content, err := client.ChatCompletion(ctx, hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", content)
		assert.Equal(t, 3*time.Second, time.Since(start), "waited exactly for westus's rest")
		assert.Equal(t, []time.Duration{3 * time.Second}, waits)
		assert.Equal(t, []string{"eastus", "westus", "westus"}, rec.regions())
	})
}

func TestReturnsAtOnceWhenTheWaitWouldBeTooLong(t *testing.T) {
	cases := []struct {
		name     string
		maxWait  time.Duration
		deadline time.Duration // 0: none
	}{
		{"beyond the maximum wait", 10 * time.Second, 0},
		{"beyond the deadline", time.Minute, 5 * time.Second},
		{"never waits", 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithMaxWait(tc.maxWait))
				servers[0].SetDefault(failovertest.RateLimited(30 * time.Second))
				servers[1].SetDefault(failovertest.RateLimited(20 * time.Second))
				ctx := t.Context()
				if tc.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.deadline)
					defer cancel()
				}
				start := time.Now()
				_, err := client.ChatCompletion(ctx, hello())
				require.ErrorIs(t, err, failover.ErrExhausted)
				var exhausted *failover.ExhaustedError
				require.ErrorAs(t, err, &exhausted)
				assert.Equal(t, start.Add(20*time.Second), exhausted.RetryAt, "westus comes back first")
				assert.Len(t, exhausted.Attempts, 2)
				assert.Zero(t, time.Since(start), "no waiting")

				// Every region now rests: the next request sends nothing and says the same.
				_, err = client.ChatCompletion(ctx, hello())
				require.ErrorAs(t, err, &exhausted)
				assert.Empty(t, exhausted.Attempts)
				assert.Equal(t, start.Add(20*time.Second), exhausted.RetryAt)
				require.Len(t, exhausted.Skipped, 2)
				assertSkip(t, failover.Skip{Region: "eastus", State: failover.StateResting,
					Until: start.Add(30 * time.Second), Reason: "429 rate limited"}, exhausted.Skipped[0])
				assert.Contains(t, err.Error(), "retry at "+start.Add(20*time.Second).UTC().Format("2006-01-02T15:04:05.000Z"))
				assert.Equal(t, 1, servers[0].Requests())
				assert.Equal(t, 1, servers[1].Requests())
			})
		})
	}
}

func TestWaitEndsWithTheCallersContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus"}, failover.WithMaxWait(time.Minute))
		servers[0].SetDefault(failovertest.RateLimited(30 * time.Second))
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(2 * time.Second)
			cancel()
		}()
		start := time.Now()
		_, err := client.ChatCompletion(ctx, hello())
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 2*time.Second, time.Since(start), "the wait ends when the caller gives up")
		assert.Equal(t, 1, servers[0].Requests())
	})
}

func TestUnreachableRegionRestsForEveryModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, fixedBackoff(time.Minute))
		servers[0].Script(failovertest.Disconnect())
		var rec recorder
		_, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, time.Minute, rec.first().Rest)
		h := client.Health()[0]
		assert.Equal(t, failover.StateResting, h.State)
		assert.Equal(t, "no answer", h.Reason)
		assert.Equal(t, time.Now().Add(time.Minute), h.Until)

		_, err = client.CreateEmbeddings(t.Context(), embeddingRequest())
		require.NoError(t, err)
		assert.Equal(t, 1, servers[0].Requests(), "no model goes to a region that does not answer")
	})
}

func TestTraceAndHealthTellTheStory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus", "swedencentral"}, fixedBackoff(5*time.Second))
		servers[0].Script(failovertest.RateLimited(20 * time.Second))
		servers[1].Script(failovertest.Slow(time.Second, failovertest.InternalError()))
		servers[2].Script(failovertest.Slow(300*time.Millisecond, failovertest.OK("")))

		var rec recorder
		_, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		require.Len(t, rec.attempts, 3)
		want := []struct {
			region  string
			status  int
			outcome failover.Outcome
			rest    time.Duration
			took    time.Duration
		}{
			{"eastus", 429, failover.OutcomeFailedOver, 20 * time.Second, 0},
			{"westus", 500, failover.OutcomeFailedOver, 5 * time.Second, time.Second},
			{"swedencentral", 200, failover.OutcomeServed, 0, 300 * time.Millisecond},
		}
		for i, w := range want {
			a := rec.attempts[i]
			assert.Equal(t, w.region, a.Region)
			assert.Equal(t, w.status, a.Status)
			assert.Equal(t, w.outcome, a.Outcome)
			assert.Equal(t, w.rest, a.Rest)
			assert.Equal(t, w.took, a.Duration)
			assert.Equal(t, w.region, a.Header.Get("X-Ms-Region"))
		}
		assert.Contains(t, rec.attempts[0].String(), "eastus: 429 failed over after 0s, resting 20s: ")

		now := time.Now()
		health := client.Health()
		require.Len(t, health, 3)
		assert.Equal(t, "eastus", health[0].Region)
		assert.Equal(t, []failover.ModelHealth{{Model: "gpt-4o", State: failover.StateResting, Until: now.Add(20*time.Second - 1300*time.Millisecond), Reason: "429 rate limited"}}, health[0].Models)
		assert.Equal(t, []failover.ModelHealth{{Model: "gpt-4o", State: failover.StateResting, Until: now.Add(5*time.Second - 300*time.Millisecond), Reason: "500 Internal Server Error"}}, health[1].Models)
		assert.Equal(t, failover.RegionHealth{Region: "swedencentral", Weight: 1, State: failover.StateServing, Latency: 300 * time.Millisecond}, health[2])
		assert.Zero(t, health[0].Latency, "no answer served yet")
	})
}

func TestAttemptHookSeesEveryAttempt(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	hook := failover.WithOnAttempt(func(ctx context.Context, a failover.Attempt) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, a.Region+" "+a.Outcome.String())
		assert.NotNil(t, ctx)
	})
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.RequestTimeout())
	client := newClient(t, regionsOf(servers...), hook)
	_, err := client.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	_, err = client.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Equal(t, []string{"eastus failed over", "westus served", "westus served"}, seen)
}

func TestHealthMarshalsToJSON(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	servers[0].Script(failovertest.Unauthorized())
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	_, err := client.ChatCompletion(t.Context(), hello())
	require.ErrorIs(t, err, failover.ErrExhausted)
	data, err := jsonOf(client.Health())
	require.NoError(t, err)
	assert.Contains(t, data, `"region":"eastus","priority":0,"weight":1,"state":"resting","until":"`)
	assert.Contains(t, data, `"reason":"401: credentials rejected"`)
	assert.NotContains(t, data, servers[0].Key)
	assert.Equal(t, http.StatusUnauthorized, servers[0].Calls()[0].Status)
}

type panicOnce struct {
	next  http.RoundTripper
	armed bool
}

func (p *panicOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if p.armed {
		p.armed = false
		panic("transport bug")
	}
	return p.next.RoundTrip(req)
}

func TestPanickingProbeDoesNotLeaveTheRegionProbing(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	servers[0].Script(failovertest.InternalError())
	transport := &panicOnce{next: http.DefaultTransport}
	client := newClient(t, regionsOf(servers...), failover.WithHTTPClient(&http.Client{Transport: transport}),
		fixedBackoff(0), failover.WithMaxWait(0))
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	_, err := client.ChatCompletion(t.Context(), hello())
	require.Error(t, err)
	assert.Equal(t, failover.StateHalfOpen, client.Health()[0].Models[0].State)

	transport.armed = true
	func() {
		defer func() { assert.Equal(t, "transport bug", recover()) }()
		_, _ = client.ChatCompletion(t.Context(), hello())
	}()
	assert.Equal(t, failover.StateHalfOpen, client.Health()[0].Models[0].State, "the probe's claim was released")
	content, err := client.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from eastus.", content)
}

// TestExhaustedSaysWhyEveryBackendWasPassedOver: a rest that ends while the request is still trying other
// backends still explains, in the error, why that backend was not tried.
func TestExhaustedSaysWhyEveryBackendWasPassedOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Without steering: it would put resting eastus after westus, and try it once its rest is over.
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithMaxWait(0), failover.WithQuotaSteering(false))
		servers[0].Script(failovertest.RateLimited(time.Second))
		servers[1].Script(failovertest.Reply{}, failovertest.Slow(2*time.Second, failovertest.InternalError()))
		_, err := client.ChatCompletion(t.Context(), hello()) // eastus rests for a second; westus serves
		require.NoError(t, err)
		rested := time.Now()

		_, err = client.ChatCompletion(t.Context(), hello()) // eastus passed over; westus fails after 2 s
		var ex *failover.ExhaustedError
		require.ErrorAs(t, err, &ex)
		require.Len(t, ex.Attempts, 1)
		assert.Equal(t, "westus", ex.Attempts[0].Region)
		require.Len(t, ex.Skipped, 1, "eastus's rest ended before the request gave up, but it was why eastus was not tried")
		assertSkip(t, failover.Skip{Region: "eastus", State: failover.StateResting, Until: rested.Add(time.Second),
			Reason: "429 rate limited"}, ex.Skipped[0])
	})
}
