package failover_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests of WithHedging run in synctest bubbles over failovertest's in-memory network, so that every delay
// is exact: a hedge sent after 100 ms is sent at 100 ms of fake time, and an answer that comes 50 ms later ends
// the call at 150 ms. Each fake region is served through a spy that records, for every request, when its
// handler returned and whether its context had ended by then: a region whose request was canceled sees it.

// hedge100 hedges an attempt unanswered for 100 ms, with a budget that funds a hedge for every request (and, as
// every budget, starts full: maxHedgeBurst hedges).
var hedge100 = failover.Hedging{Delay: 100 * time.Millisecond, MaxShare: 1}

// rig is fake regions, each behind a spy, on an in-memory network, and a client that reaches them through a
// transport that can be told to panic for a region.
type rig struct {
	regions   []*spied
	fallback  *spied // nil but from newFallbackRig
	transport *rigTransport
	client    *failover.Client
}

// spied is a fake region served through a spy.
type spied struct {
	*failovertest.Server
	url string

	mu      sync.Mutex
	handled []handled
}

// handled is what the spy saw of one request.
type handled struct {
	arrived, returned time.Time
	canceled          bool // the handler's context had ended when it returned: the client gave up
}

func (s *spied) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := handled{arrived: time.Now()}
	s.Server.ServeHTTP(w, r)
	h.returned, h.canceled = time.Now(), r.Context().Err() != nil
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handled = append(s.handled, h)
}

// requests is what the spy saw, for the requests whose handlers have returned, in the order they returned.
func (s *spied) requests() []handled {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.handled)
}

// rigTransport sends through the network's transport, unless a region's requests are set to panic, and records
// why the requests that failed had their context end, and how many answers' bodies are open.
type rigTransport struct {
	next   http.RoundTripper
	mu     sync.Mutex
	hosts  map[string]string              // host: region name
	panics map[string]func(*http.Request) // region name: what a request to it does before it panics
	causes map[string][]error             // region name: context.Cause of each failed request whose context ended
	open   atomic.Int64                   // bodies handed to the client and not yet closed
}

// trackedBody is an answer's body, counted in its transport's open bodies until it is closed.
type trackedBody struct {
	io.ReadCloser
	open   *atomic.Int64
	closed atomic.Bool
}

func (b *trackedBody) Close() error {
	if !b.closed.Swap(true) {
		b.open.Add(-1)
	}
	return b.ReadCloser.Close()
}

// hedgePanic is what a panicking transport panics with.
type hedgePanic struct{ region string }

func (tr *rigTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tr.mu.Lock()
	name := tr.hosts[req.URL.Host]
	before := tr.panics[name]
	tr.mu.Unlock()
	if before != nil {
		before(req)
		panic(hedgePanic{name})
	}
	resp, err := tr.next.RoundTrip(req)
	if err != nil && req.Context().Err() != nil {
		tr.mu.Lock()
		tr.causes[name] = append(tr.causes[name], context.Cause(req.Context()))
		tr.mu.Unlock()
	}
	if resp != nil {
		tr.open.Add(1)
		resp.Body = &trackedBody{ReadCloser: resp.Body, open: &tr.open}
	}
	return resp, err
}

// causes is why region's requests that failed had their context end, in the order they failed.
func (r *rig) causes(region string) []error {
	r.transport.mu.Lock()
	defer r.transport.mu.Unlock()
	return slices.Clone(r.transport.causes[region])
}

// panicFor makes requests to region panic in the transport, after before returns.
func (r *rig) panicFor(region string, before func(*http.Request)) {
	r.transport.mu.Lock()
	defer r.transport.mu.Unlock()
	r.transport.panics[region] = before
}

// newRig starts one fake region per name and a client with opts that reaches them. Call it inside a bubble.
func newRig(t *testing.T, names []string, opts ...failover.Option) *rig {
	t.Helper()
	return buildRig(t, names, false, opts)
}

// newFallbackRig is newRig with a fake public OpenAI API as the fallback.
func newFallbackRig(t *testing.T, names []string, opts ...failover.Option) *rig {
	t.Helper()
	return buildRig(t, names, true, opts)
}

func buildRig(t *testing.T, names []string, fallback bool, opts []failover.Option) *rig {
	t.Helper()
	network := failovertest.NewNetwork()
	t.Cleanup(network.Close)
	// The servers themselves listen on a network nobody dials: the spies, on network, call them.
	hidden := failovertest.NewNetwork()
	t.Cleanup(hidden.Close)
	tr := &rigTransport{next: network.Client().Transport, hosts: map[string]string{},
		panics: map[string]func(*http.Request){}, causes: map[string][]error{}}
	r := &rig{transport: tr}
	serve := func(srv *failovertest.Server, suffix string) *spied {
		t.Cleanup(srv.Close)
		s := &spied{Server: srv}
		u, stop := network.Serve(s)
		t.Cleanup(stop)
		s.url = u + suffix
		tr.hosts[strings.TrimPrefix(u, "http://")] = srv.Name
		return s
	}
	var regions []failover.Region
	for _, name := range names {
		s := serve(failovertest.NewRegion(name, failovertest.OnNetwork(hidden)), "")
		r.regions = append(r.regions, s)
		regions = append(regions, failover.Region{Name: s.Name, Endpoint: s.url, APIKey: s.Key})
	}
	all := []failover.Option{failover.WithHTTPClient(&http.Client{Transport: tr})}
	if fallback {
		r.fallback = serve(failovertest.NewOpenAI(failovertest.OnNetwork(hidden)), "/v1")
		all = append(all, failover.WithOpenAIFallback(r.fallback.Key, r.fallback.url))
	}
	r.client = newClient(t, regions, append(all, opts...)...)
	return r
}

// chat asks for a chat completion and returns its text, the attempts and how long it took.
func (r *rig) chat(ctx context.Context) (string, []failover.Attempt, time.Duration, error) {
	var rec recorder
	start := time.Now()
	content, err := r.client.ChatCompletion(rec.context(ctx), hello())
	return content, rec.list(), time.Since(start), err
}

const (
	lostMessage     = "another attempt of the request answered first"
	panickedMessage = "another attempt of the request panicked"
)

// messages are errs' messages.
func messages(errs []error) []string {
	out := make([]string, len(errs))
	for i, err := range errs {
		out[i] = err.Error()
	}
	return out
}

// --- The race ------------------------------------------------------------------------------------------------

func TestHedgeSlowRegionLosesToTheHedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
		east, west := r.regions[0], r.regions[1]
		east.Script(failovertest.Reply{Delay: 5 * time.Second})
		west.Script(failovertest.Reply{Delay: 50 * time.Millisecond})

		start := time.Now()
		content, attempts, took, err := r.chat(t.Context())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", content)
		assert.Equal(t, 150*time.Millisecond, took, "the hedge went at 100 ms and answered 50 ms later")
		assert.Equal(t, []summary{
			{"eastus", failover.OutcomeLost, false},
			{"westus", failover.OutcomeServed, true},
		}, summarize(attempts), "the loser is reported first, the hedge that won last")
		lost := attempts[0]
		assert.Equal(t, 150*time.Millisecond, lost.Duration)
		assert.Zero(t, lost.Status, "the loser never answered")
		require.Error(t, lost.Err)
		assert.Equal(t, lostMessage, lost.Err.Error())
		assert.Zero(t, lost.Rest, "losing a race is no failure of the region")
		assert.Equal(t, 50*time.Millisecond, attempts[1].Duration)
		assert.Equal(t, 200, attempts[1].Status)

		synctest.Wait()
		got := east.requests()
		require.Len(t, got, 1, "eastus's handler returned")
		assert.True(t, got[0].canceled, "eastus's handler saw its request's context end")
		assert.Equal(t, start.Add(150*time.Millisecond), got[0].returned, "at once when the hedge won")
		assert.Equal(t, []string{lostMessage}, messages(r.causes("eastus")), "the cause of the loser's cancellation")
		westCalls := west.Calls()
		require.Len(t, westCalls, 1)
		assert.Equal(t, start.Add(100*time.Millisecond), westCalls[0].Time, "the hedge went exactly at the delay")

		time.Sleep(10 * time.Second)
		assert.Empty(t, east.Statuses(), "eastus never answered: its 5 s reply was canceled")
		assert.Equal(t, failover.StateServing, r.client.Health()[0].State, "a lost race does not rest the region")
	})
}

func TestHedgeNotSentWhenTheFirstAnswersInTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
		east, west := r.regions[0], r.regions[1]
		east.Script(failovertest.Reply{Delay: 99 * time.Millisecond})

		content, attempts, took, err := r.chat(t.Context())
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", content)
		assert.Equal(t, 99*time.Millisecond, took)
		assert.Equal(t, []summary{{"eastus", failover.OutcomeServed, false}}, summarize(attempts))
		time.Sleep(time.Second) // a hedge timer left running would fire here
		synctest.Wait()
		assert.Zero(t, west.Requests(), "no hedge was sent")
		require.Len(t, east.requests(), 1)
		assert.False(t, east.requests()[0].canceled)
	})
}

func TestHedgeFastFailureIsOrdinaryFailover(t *testing.T) {
	for _, fail := range []failovertest.Reply{failovertest.RateLimited(30 * time.Second), failovertest.InternalError()} {
		t.Run(fmt.Sprint(fail.Status), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, []string{"eastus", "westus", "centralus"}, failover.WithHedging(hedge100))
				east, west, central := r.regions[0], r.regions[1], r.regions[2]
				fail.Delay = 20 * time.Millisecond
				east.Script(fail)
				west.Script(failovertest.Reply{Delay: 30 * time.Millisecond})

				content, attempts, took, err := r.chat(t.Context())
				require.NoError(t, err)
				assert.Equal(t, "Hello from westus.", content)
				assert.Equal(t, 50*time.Millisecond, took)
				assert.Equal(t, []summary{
					{"eastus", failover.OutcomeFailedOver, false},
					{"westus", failover.OutcomeServed, false},
				}, summarize(attempts), "a failure before the delay fails over; the next attempt is no hedge")
				time.Sleep(time.Second)
				assert.Zero(t, central.Requests())
			})
		})
	}
}

// TestHedgeFailoverKeepsTheRequestsHedge: a failover costs neither the request's hedge nor the budget's; the
// region failed over to is still hedged when it is slow.
func TestHedgeFailoverKeepsTheRequestsHedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus", "centralus"},
			failover.WithHedging(failover.Hedging{Delay: 100 * time.Millisecond, MaxShare: 0.5}))
		east, west, central := r.regions[0], r.regions[1], r.regions[2]
		drainHalf(t, r)
		// The budget holds half a hedge, and the request's share makes it one; MaxHedges is 1.
		east.Script(failovertest.Slow(20*time.Millisecond, failovertest.InternalError()))
		west.Script(failovertest.Reply{Delay: 5 * time.Second})

		content, attempts, took, err := r.chat(t.Context())
		require.NoError(t, err)
		assert.Equal(t, "Hello from centralus.", content)
		assert.Equal(t, 120*time.Millisecond, took, "westus, tried at 20 ms, was hedged 100 ms later")
		assert.Equal(t, []summary{
			{"eastus", failover.OutcomeFailedOver, false},
			{"westus", failover.OutcomeLost, false},
			{"centralus", failover.OutcomeServed, true},
		}, summarize(attempts))
		synctest.Wait()
		got := west.requests()
		require.Len(t, got, 20, "the drain's 19 hedges, and this request's attempt")
		assert.True(t, got[len(got)-1].canceled)
		assert.Equal(t, 1, central.Requests())
	})
}

// drainHalf spends the banked hedges of r's new client, whose Hedging has MaxShare 0.5, a Delay below 1 s and the
// default MaxHedges: with eastus slow, requests in a row are hedged to westus while the budget holds a hedge, which
// it does for the first 19 (the maxHedgeBurst banked and the shares of the 2nd to the 19th: the 1st's is lost to
// the full budget). The 20th is not hedged, and leaves its share: the budget holds half a hedge.
func drainHalf(t *testing.T, r *rig) {
	t.Helper()
	east, west := r.regions[0], r.regions[1]
	require.Zero(t, west.Requests(), "a new client")
	for i := 1; i <= 20; i++ {
		east.Script(failovertest.Reply{Delay: time.Second})
		content, _, _, err := r.chat(t.Context())
		require.NoError(t, err)
		want := "Hello from westus."
		if i == 20 {
			want = "Hello from eastus."
		}
		require.Equal(t, want, content, "request %d", i)
	}
	require.Equal(t, 19, west.Requests())
}

func TestHedgeThatFailsLeavesTheFirstToAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100), failover.WithMaxWait(0))
		east, west := r.regions[0], r.regions[1]
		east.Script(failovertest.Reply{Delay: 300 * time.Millisecond})
		west.Script(failovertest.Slow(10*time.Millisecond, failovertest.InternalError()))

		content, attempts, took, err := r.chat(t.Context())
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", content, "the first attempt's answer, after all")
		assert.Equal(t, 300*time.Millisecond, took)
		assert.Equal(t, []summary{
			{"westus", failover.OutcomeFailedOver, true},
			{"eastus", failover.OutcomeServed, false},
		}, summarize(attempts), "the hedge's failure is reported when it came")
		assert.Equal(t, 500, attempts[0].Status)
		assert.Equal(t, 10*time.Millisecond, attempts[0].Duration)
		assert.Positive(t, attempts[0].Rest, "the hedge's failure rests its region like any failure")
		assert.Equal(t, 300*time.Millisecond, attempts[1].Duration)
		synctest.Wait()
		require.Len(t, east.requests(), 1)
		assert.False(t, east.requests()[0].canceled)
		westHealth := r.client.Health()[1]
		require.Len(t, westHealth.Models, 1)
		assert.Equal(t, failover.StateResting, westHealth.Models[0].State, "the hedge's 500 rests the model in westus")
	})
}

func TestHedgeEveryRacedAttemptFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus", "centralus"}, failover.WithHedging(hedge100),
			failover.WithMaxWait(0))
		east, west, central := r.regions[0], r.regions[1], r.regions[2]
		east.Script(failovertest.Slow(300*time.Millisecond, failovertest.InternalError()))
		west.Script(failovertest.InternalError())
		central.Script(failovertest.Reply{Delay: time.Second})

		content, attempts, took, err := r.chat(t.Context())
		require.NoError(t, err)
		assert.Equal(t, "Hello from centralus.", content)
		assert.Equal(t, 1300*time.Millisecond, took, "centralus was tried when eastus failed, and not hedged")
		assert.Equal(t, []summary{
			{"westus", failover.OutcomeFailedOver, true},
			{"eastus", failover.OutcomeFailedOver, false},
			{"centralus", failover.OutcomeServed, false},
		}, summarize(attempts))

		// With no region left, the request is exhausted, with every raced attempt in its error.
		r2 := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100), failover.WithMaxWait(0))
		r2.regions[0].Script(failovertest.Slow(300*time.Millisecond, failovertest.InternalError()))
		r2.regions[1].Script(failovertest.InternalError())
		_, attempts, took, err = r2.chat(t.Context())
		var exhausted *failover.ExhaustedError
		require.ErrorAs(t, err, &exhausted)
		assert.Equal(t, 300*time.Millisecond, took)
		assert.Equal(t, []summary{
			{"westus", failover.OutcomeFailedOver, true},
			{"eastus", failover.OutcomeFailedOver, false},
		}, summarize(exhausted.Attempts))
		assert.Equal(t, summarize(attempts), summarize(exhausted.Attempts))
	})
}

func TestHedgeRefusalSettlesTheRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
		east, west := r.regions[0], r.regions[1]
		east.Script(failovertest.Reply{Delay: 5 * time.Second})
		west.Script(failovertest.BadRequest("no such parameter"))

		_, attempts, took, err := r.chat(t.Context())
		var apiErr *openai.APIError
		require.ErrorAs(t, err, &apiErr, "a 400 settles the request, from a hedge too")
		assert.Equal(t, 400, apiErr.HTTPStatusCode)
		assert.Equal(t, 100*time.Millisecond, took)
		assert.Equal(t, []summary{
			{"eastus", failover.OutcomeLost, false},
			{"westus", failover.OutcomeReturned, true},
		}, summarize(attempts))
		synctest.Wait()
		require.Len(t, east.requests(), 1)
		assert.True(t, east.requests()[0].canceled)
	})
}

func TestHedgeMaxHedges(t *testing.T) {
	t.Run("2", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := hedge100
			h.MaxHedges, h.MaxShare = 2, 1
			r := newRig(t, []string{"eastus", "westus", "centralus"}, failover.WithHedging(h),
				failover.WithQuotaSteering(false))
			// A new client's budget is full: it holds both hedges.
			r.regions[0].Script(failovertest.Reply{Delay: 5 * time.Second})
			r.regions[1].Script(failovertest.Reply{Delay: 5 * time.Second})
			r.regions[2].Script(failovertest.Reply{Delay: 50 * time.Millisecond})

			start := time.Now()
			content, attempts, took, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, "Hello from centralus.", content)
			assert.Equal(t, 250*time.Millisecond, took, "hedges at 100 ms and 200 ms; centralus answered at 250 ms")
			require.Len(t, attempts, 3)
			assert.Equal(t, summary{"centralus", failover.OutcomeServed, true}, summarize(attempts)[2], "the winner last")
			assert.ElementsMatch(t, []summary{
				{"eastus", failover.OutcomeLost, false},
				{"westus", failover.OutcomeLost, true},
			}, summarize(attempts[:2]))
			synctest.Wait()
			assert.Equal(t, start.Add(100*time.Millisecond), lastCall(t, r.regions[1]).Time)
			assert.Equal(t, start.Add(200*time.Millisecond), lastCall(t, r.regions[2]).Time)
			for _, s := range r.regions[:2] {
				got := s.requests()
				require.NotEmpty(t, got)
				assert.True(t, got[len(got)-1].canceled, s.Name)
			}
		})
	})
	t.Run("1", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, []string{"eastus", "westus", "centralus"}, failover.WithHedging(hedge100))
			r.regions[0].Script(failovertest.Reply{Delay: 5 * time.Second})
			r.regions[1].Script(failovertest.Reply{Delay: 5 * time.Second})
			r.regions[2].Script(failovertest.Reply{Delay: 50 * time.Millisecond})

			content, attempts, took, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, "Hello from eastus.", content, "one hedge only: eastus's 5 s beat westus's 5.1 s")
			assert.Equal(t, 5*time.Second, took)
			assert.Equal(t, []summary{
				{"westus", failover.OutcomeLost, true},
				{"eastus", failover.OutcomeServed, false},
			}, summarize(attempts))
			assert.Zero(t, r.regions[2].Requests(), "no second hedge")
		})
	})
}

func lastCall(t *testing.T, s *spied) failovertest.Call {
	t.Helper()
	calls := s.Calls()
	require.NotEmpty(t, calls, s.Name)
	return calls[len(calls)-1]
}

func TestHedgePassesOverARestingRegion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus", "centralus"}, failover.WithHedging(hedge100))
		east, west, central := r.regions[0], r.regions[1], r.regions[2]
		east.Script(failovertest.Reply{Delay: time.Second}, failovertest.Reply{Delay: time.Second})
		west.Script(failovertest.RateLimited(time.Minute))

		content, attempts, _, err := r.chat(t.Context())
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", content)
		assert.Equal(t, []summary{
			{"westus", failover.OutcomeFailedOver, true},
			{"eastus", failover.OutcomeServed, false},
		}, summarize(attempts))
		assert.Zero(t, central.Requests(), "the request's one hedge was spent on westus")

		content, attempts, took, err := r.chat(t.Context())
		require.NoError(t, err)
		assert.Equal(t, "Hello from centralus.", content, "the hedge passed over westus, which rests")
		assert.Equal(t, 100*time.Millisecond, took)
		assert.Equal(t, []summary{
			{"eastus", failover.OutcomeLost, false},
			{"centralus", failover.OutcomeServed, true},
		}, summarize(attempts))
		assert.Equal(t, 1, west.Requests())
	})
}

// --- The budget ---------------------------------------------------------------------------------------------

// TestHedgeBudget: every request adds MaxShare to the budget, up to 10 hedges; every hedge takes one. A new
// client's budget is full, so that it can hedge its first slow requests: with the default 0.1, a burst of slow
// requests gets the 10 banked hedges, then one more for every 10 requests: of 25, the first 11 (the first
// request's share is lost to the full budget, the next 10 shares fund the 11th) and the 21st. A quiet spell of
// requests answered in time fills it again.
func TestHedgeBudget(t *testing.T) {
	hedged := func(t *testing.T, r *rig, n int) []int {
		t.Helper()
		var out []int
		for i := 1; i <= n; i++ {
			content, attempts, took, err := r.chat(t.Context())
			require.NoError(t, err)
			switch content {
			case "Hello from westus.":
				out = append(out, i)
				assert.Equal(t, 100*time.Millisecond, took)
				assert.True(t, attempts[len(attempts)-1].Hedged)
			default:
				assert.Equal(t, time.Second, took)
				assert.Len(t, attempts, 1)
			}
		}
		return out
	}
	burst := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 21}
	h := failover.Hedging{Delay: 100 * time.Millisecond} // MaxShare 0: 0.1
	t.Run("new client", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(h))
			r.regions[0].SetDefault(failovertest.Reply{Delay: time.Second})
			assert.Equal(t, burst, hedged(t, r, 25))
			assert.Equal(t, 12, r.regions[1].Requests())
		})
	})
	t.Run("refilled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(h))
			r.regions[0].SetDefault(failovertest.Reply{Delay: time.Second})
			require.Equal(t, burst, hedged(t, r, 25), "the burst empties the budget")
			r.regions[0].SetDefault(failovertest.Reply{})
			for range 100 { // a quiet spell: answered in time, never hedged, filling the budget
				content, _, _, err := r.chat(t.Context())
				require.NoError(t, err)
				require.Equal(t, "Hello from eastus.", content)
			}
			r.regions[0].SetDefault(failovertest.Reply{Delay: time.Second})
			assert.Equal(t, burst, hedged(t, r, 25), "the budget is full again, and no fuller")
			assert.Equal(t, 24, r.regions[1].Requests())
		})
	})
	t.Run("concurrent requests share it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := failover.Hedging{Delay: 100 * time.Millisecond, MaxShare: 0.5}
			r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(h), failover.WithQuotaSteering(false))
			drainHalf(t, r)
			r.regions[0].SetDefault(failovertest.Reply{Delay: time.Second})
			// 8 requests at once fund 4 hedges; only 4 of them are hedged (the half hedge left makes no fifth).
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					_, err := r.client.ChatCompletion(t.Context(), hello())
					assert.NoError(t, err)
				})
			}
			wg.Wait()
			assert.Equal(t, 19+4, r.regions[1].Requests())
		})
	})
}

// --- The learned delay ----------------------------------------------------------------------------------------

func TestHedgeLearnedDelay(t *testing.T) {
	t.Run("percentile alone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, []string{"eastus", "westus"},
				failover.WithHedging(failover.Hedging{Percentile: 0.9}))
			east, west := r.regions[0], r.regions[1]
			for i := 1; i <= 19; i++ {
				east.Script(failovertest.Reply{Delay: time.Duration(i) * 10 * time.Millisecond})
				_, _, _, err := r.chat(t.Context())
				require.NoError(t, err)
			}
			// 19 samples, and the budget holds hedges (a new client's is full), but there is no delay yet.
			east.Script(failovertest.Reply{Delay: time.Second})
			content, _, took, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, "Hello from eastus.", content)
			assert.Equal(t, time.Second, took)
			assert.Zero(t, west.Requests(), "no hedging before 20 samples")

			// 20 samples: 10 ms … 190 ms and 1 s. Their 90th percentile is the 18th smallest, 180 ms.
			east.Script(failovertest.Reply{Delay: 5 * time.Second})
			start := time.Now()
			content, attempts, took, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, "Hello from westus.", content)
			assert.Equal(t, 180*time.Millisecond, took)
			assert.Equal(t, []summary{
				{"eastus", failover.OutcomeLost, false},
				{"westus", failover.OutcomeServed, true},
			}, summarize(attempts))
			assert.Equal(t, start.Add(180*time.Millisecond), lastCall(t, west).Time)

			// Latencies are kept by model and by kind: neither another model nor a stream has any yet.
			east.Script(failovertest.Reply{Delay: time.Second}, failovertest.Reply{Delay: time.Second})
			resp, err := r.client.CreateChatCompletion(t.Context(),
				openai.ChatCompletionRequest{Model: "gpt-4o-mini", Messages: hello()})
			require.NoError(t, err)
			assert.Equal(t, "Hello from eastus.", resp.Choices[0].Message.Content)
			stream, err := r.client.CreateChatCompletionStream(t.Context(), chatRequest())
			require.NoError(t, err)
			assert.Equal(t, "eastus", stream.Region())
			require.NoError(t, stream.Close())
			assert.Equal(t, 1, west.Requests(), "only the one hedge")
		})
	})
	t.Run("delay is the floor", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := failover.Hedging{Delay: 500 * time.Millisecond, Percentile: 0.9, MaxShare: 1}
			r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(h))
			east, west := r.regions[0], r.regions[1]
			east.Script(failovertest.Reply{Delay: 5 * time.Second})
			_, _, took, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, 500*time.Millisecond, took, "before 20 samples, Delay")
			// The loser's 500 ms is a sample; 19 more make 20, whose 90th percentile is 180 ms.
			for i := 1; i <= 19; i++ {
				east.Script(failovertest.Reply{Delay: time.Duration(i) * 10 * time.Millisecond})
				_, _, _, err := r.chat(t.Context())
				require.NoError(t, err)
			}
			assert.Equal(t, 1, west.Requests())
			east.Script(failovertest.Reply{Delay: 5 * time.Second})
			content, _, took, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, "Hello from westus.", content)
			assert.Equal(t, 500*time.Millisecond, took, "the learned 180 ms is below Delay")
		})
	})
}

// --- Streams --------------------------------------------------------------------------------------------------

func TestHedgeStream(t *testing.T) {
	open := map[string]func(*rig, context.Context) (string, string, []failover.Attempt, error){
		"Client": func(r *rig, ctx context.Context) (string, string, []failover.Attempt, error) {
			stream, err := r.client.CreateChatCompletionStream(ctx, chatRequest())
			if err != nil {
				return "", "", nil, err
			}
			defer stream.Close()
			text, err := failovertest.ReadStream(stream)
			return text, stream.Region(), stream.Attempts(), err
		},
		"go-openai": func(r *rig, ctx context.Context) (string, string, []failover.Attempt, error) {
			var rec recorder
			stream, err := doerClient(r.client).CreateChatCompletionStream(rec.context(ctx), chatRequest())
			if err != nil {
				return "", "", nil, err
			}
			defer stream.Close()
			text, err := failovertest.ReadStream(stream)
			attempts := rec.list()
			return text, attempts[len(attempts)-1].Region, attempts, err
		},
	}
	for name, open := range open {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
				east, west := r.regions[0], r.regions[1]
				// eastus sends its headers at once, and its first event after 5 s.
				east.Script(failovertest.Reply{BodyDelay: 5 * time.Second, Content: "east one two"})
				west.Script(failovertest.Reply{Delay: 50 * time.Millisecond, Content: "west three four"})

				start := time.Now()
				text, region, attempts, err := open(r, t.Context())
				require.NoError(t, err)
				assert.Equal(t, "west three four", text, "only the hedge's chunks reach the caller")
				assert.Equal(t, "westus", region)
				assert.Equal(t, 150*time.Millisecond, time.Since(start))
				assert.Equal(t, []summary{
					{"eastus", failover.OutcomeLost, false},
					{"westus", failover.OutcomeServed, true},
				}, summarize(attempts))
				assert.Equal(t, 200, attempts[0].Status, "eastus had sent its headers")
				synctest.Wait()
				got := east.requests()
				require.Len(t, got, 1)
				assert.True(t, got[0].canceled, "eastus's connection was canceled")
				assert.Equal(t, start.Add(150*time.Millisecond), got[0].returned)
			})
		})
	}
}

// TestHedgeStreamsAnsweringTogether: both streams reach their first content at the same instant (the hedge went
// at 50 ms, and each has its first content at 100 ms); whichever wins, the caller reads its chunks only, and the
// other is closed unread.
func TestHedgeStreamsAnsweringTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"},
			failover.WithHedging(failover.Hedging{Delay: 50 * time.Millisecond, MaxShare: 1}),
			failover.WithQuotaSteering(false))
		east, west := r.regions[0], r.regions[1]
		content := map[string]string{"eastus": "east one two three", "westus": "west four five six"}
		won := map[string]int{}
		for range 20 {
			east.Script(failovertest.Reply{BodyDelay: 100 * time.Millisecond, Content: content["eastus"]})
			west.Script(failovertest.Reply{Delay: 50 * time.Millisecond, Content: content["westus"]})
			start := time.Now()
			stream, err := r.client.CreateChatCompletionStream(t.Context(), chatRequest())
			require.NoError(t, err)
			assert.Equal(t, 100*time.Millisecond, time.Since(start))
			text, err := failovertest.ReadStream(stream)
			require.NoError(t, err)
			require.NoError(t, stream.Close())
			won[stream.Region()]++
			assert.Equal(t, content[stream.Region()], text)
			attempts := stream.Attempts()
			require.Len(t, attempts, 2)
			assert.Equal(t, failover.OutcomeLost, attempts[0].Outcome)
			assert.NotEqual(t, stream.Region(), attempts[0].Region)
			assert.Equal(t, failover.OutcomeServed, attempts[1].Outcome)
			time.Sleep(time.Second)
		}
		t.Logf("wins: %v", won)
		assert.Equal(t, 20, won["eastus"]+won["westus"])
	})
}

// TestHedgeStreamFailingBeforeContent: the hedge's stream fails at its first event; the first stream, slow to
// its first content, is the one read.
func TestHedgeStreamFailingBeforeContent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
		east, west := r.regions[0], r.regions[1]
		east.Script(failovertest.Reply{BodyDelay: 300 * time.Millisecond, Content: "east one two"})
		west.Script(failovertest.Reply{StreamErrorAt: 1, Content: "west three four"})

		stream, err := r.client.CreateChatCompletionStream(t.Context(), chatRequest())
		require.NoError(t, err)
		defer stream.Close()
		text, err := failovertest.ReadStream(stream)
		require.NoError(t, err)
		assert.Equal(t, "east one two", text)
		assert.Equal(t, []summary{
			{"westus", failover.OutcomeFailedOver, true},
			{"eastus", failover.OutcomeServed, false},
		}, summarize(stream.Attempts()))
	})
}

// --- What is never hedged to --------------------------------------------------------------------------------

func TestHedgeNeverToTheOpenAIFallback(t *testing.T) {
	t.Run("one region", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newFallbackRig(t, []string{"eastus"}, failover.WithHedging(hedge100))
			r.regions[0].Script(failovertest.Reply{Delay: time.Second})
			content, attempts, took, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, "Hello from eastus.", content)
			assert.Equal(t, time.Second, took)
			assert.Equal(t, []summary{{"eastus", failover.OutcomeServed, false}}, summarize(attempts))
			assert.Zero(t, r.fallback.Requests())
		})
	})
	t.Run("after the regions", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := hedge100
			h.MaxHedges = 3 // more hedges than the regions can take, and a new client's budget holds them
			r := newFallbackRig(t, []string{"eastus", "westus"}, failover.WithHedging(h))
			r.regions[0].Script(failovertest.Reply{Delay: time.Second})
			r.regions[1].Script(failovertest.Reply{Delay: time.Second})
			content, attempts, took, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, "Hello from eastus.", content)
			assert.Equal(t, time.Second, took)
			assert.Equal(t, []summary{
				{"westus", failover.OutcomeLost, true},
				{"eastus", failover.OutcomeServed, false},
			}, summarize(attempts))
			assert.Zero(t, r.fallback.Requests(), "the fallback is never a hedge")
		})
	})
	t.Run("still the fallback when the regions fail", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newFallbackRig(t, []string{"eastus", "westus"},
				failover.WithHedging(hedge100), failover.WithMaxWait(0))
			r.regions[0].Script(failovertest.Slow(300*time.Millisecond, failovertest.InternalError()))
			r.regions[1].Script(failovertest.InternalError())
			r.fallback.Script(failovertest.Reply{Delay: time.Second})
			content, attempts, took, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, "Hello from openai.", content)
			assert.Equal(t, 1300*time.Millisecond, took)
			assert.Equal(t, []summary{
				{"westus", failover.OutcomeFailedOver, true},
				{"eastus", failover.OutcomeFailedOver, false},
				{failover.OpenAIFallbackName, failover.OutcomeServed, false},
			}, summarize(attempts))
		})
	})
}

// --- Cancellation and panics --------------------------------------------------------------------------------

func TestHedgeCallerCancelsMidRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
		east, west := r.regions[0], r.regions[1]
		east.Script(failovertest.Hang())
		west.Script(failovertest.Hang())

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		_, attempts, took, err := r.chat(ctx)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 300*time.Millisecond, took, "the call returns when its context ends")
		assert.ElementsMatch(t, []summary{
			{"eastus", failover.OutcomeCanceled, false},
			{"westus", failover.OutcomeCanceled, true},
		}, summarize(attempts))
		synctest.Wait()
		for _, s := range r.regions {
			got := s.requests()
			require.Len(t, got, 1, "%s's handler returned", s.Name)
			assert.True(t, got[0].canceled, s.Name)
			assert.Equal(t, start.Add(300*time.Millisecond), got[0].returned, s.Name)
		}
		for _, h := range r.client.Health() {
			assert.Equal(t, failover.StateServing, h.State, "the caller's cancellation rests no region")
		}
	})
}

// TestHedgeCanceledErrorCountsTheRacedAttempts: the error of a request whose context ended says how many attempts
// it made, as its trace has them: without hedging, the canceled attempt; in a race, every attempt raced, canceled
// or failed over alike.
func TestHedgeCanceledErrorCountsTheRacedAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		plain := newRig(t, []string{"eastus", "westus"})
		plain.regions[0].Script(failovertest.Hang())
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, _, _, err := plain.chat(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "(attempts made: 1)")

		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
		r.regions[0].Script(failovertest.Hang())
		r.regions[1].Script(failovertest.Hang())
		ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, attempts, _, err := r.chat(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ElementsMatch(t, []summary{
			{"eastus", failover.OutcomeCanceled, false},
			{"westus", failover.OutcomeCanceled, true},
		}, summarize(attempts))
		assert.Contains(t, err.Error(), "(attempts made: 2)")

		// A hedge that failed over counts too: westus fails at once, and centralus is hedged to 100 ms later.
		h := hedge100
		h.MaxHedges = 2
		r = newRig(t, []string{"eastus", "westus", "centralus"}, failover.WithHedging(h),
			failover.WithQuotaSteering(false))
		r.regions[0].Script(failovertest.Hang())
		r.regions[1].Script(failovertest.InternalError())
		r.regions[2].Script(failovertest.Hang())
		ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, attempts, _, err = r.chat(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Len(t, attempts, 3)
		assert.Equal(t, summary{"westus", failover.OutcomeFailedOver, true}, summarize(attempts)[0])
		assert.ElementsMatch(t, []summary{
			{"eastus", failover.OutcomeCanceled, false},
			{"centralus", failover.OutcomeCanceled, true},
		}, summarize(attempts[1:]))
		assert.Contains(t, err.Error(), "(attempts made: 3)")
	})
}

// TestHedgeServedAsTheContextEnds: eastus answers (a stream: has its first content) as the caller's context ends,
// while the hedge is in flight or has just failed. Without hedging the request is then either served or canceled,
// and its trace says which; so it is in a race. An answer served when the race sees the context's end goes to the
// caller, the hedge then reported canceled (lost, when the race saw the answer first); a request that fails with
// the context's error has every attempt reported canceled, none served or lost. No answer's body is left open.
func TestHedgeServedAsTheContextEnds(t *testing.T) {
	// Each asks for an answer that eastus gives (a stream: its first content) after delay, reporting the attempts
	// to the trace ctx carries, and returns the region that served it. It closes what it is given.
	requests := map[string]func(r *rig, ctx context.Context, delay time.Duration) (string, error){
		"chat": func(r *rig, ctx context.Context, delay time.Duration) (string, error) {
			r.regions[0].Script(failovertest.Reply{Delay: delay})
			content, err := r.client.ChatCompletion(ctx, hello())
			return strings.TrimSuffix(strings.TrimPrefix(content, "Hello from "), "."), err
		},
		"stream": func(r *rig, ctx context.Context, delay time.Duration) (string, error) {
			r.regions[0].Script(failovertest.Reply{BodyDelay: delay, Content: "east one two"})
			stream, err := r.client.CreateChatCompletionStream(ctx, chatRequest())
			if err != nil {
				return "", err
			}
			defer stream.Close()
			return stream.Region(), nil
		},
	}
	for name, request := range requests {
		// The same instant: eastus answers at 300 ms, when the context ends, and the race sees the one or the
		// other first.
		t.Run(name+"/same instant", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
				seen := map[string]int{}
				for range 200 {
					r.regions[1].Script(failovertest.Hang())
					ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
					var rec recorder
					start := time.Now()
					region, err := request(r, rec.context(ctx), 300*time.Millisecond)
					assert.Equal(t, 300*time.Millisecond, time.Since(start))
					cancel()
					synctest.Wait()
					require.Zero(t, r.transport.open.Load(), "an answer's body was left open")
					got := summarize(rec.list())
					if err != nil {
						seen["canceled"]++
						require.ErrorIs(t, err, context.DeadlineExceeded)
						require.ElementsMatch(t, []summary{
							{"eastus", failover.OutcomeCanceled, false},
							{"westus", failover.OutcomeCanceled, true},
						}, got, "the request failed with the context's error")
						continue
					}
					assert.Equal(t, "eastus", region)
					require.Len(t, got, 2)
					require.Equal(t, summary{"eastus", failover.OutcomeServed, false}, got[1], "the winner last")
					switch got[0] {
					case summary{"westus", failover.OutcomeLost, true}:
						seen["won the race"]++
					case summary{"westus", failover.OutcomeCanceled, true}:
						seen["served as the context ended"]++
					default:
						require.Fail(t, "westus's attempt", "%+v", got[0])
					}
				}
				t.Logf("%v", seen) // how often each comes depends on the scheduler
			})
		})
		// Both ready when the race looks: eastus answers at 250 ms, and the context ends at 300 ms, while the
		// race is held up in the trace's report of the hedge, which failed at 100 ms. The race then sees the
		// answer and the context's end at once, and takes either, at random; without hedging, the answer goes to
		// the caller, and so it does here, every time.
		t.Run(name+"/both ready", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				for range 20 {
					r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
					r.regions[1].Script(failovertest.InternalError())
					ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
					var attempts []failover.Attempt
					ctx = failover.WithTrace(ctx, &failover.Trace{AttemptDone: func(a failover.Attempt) {
						attempts = append(attempts, a) // called on the request's goroutine
						if a.Region == "westus" {
							time.Sleep(250 * time.Millisecond)
						}
					}})
					start := time.Now()
					region, err := request(r, ctx, 250*time.Millisecond)
					assert.Equal(t, 350*time.Millisecond, time.Since(start))
					cancel()
					require.NoError(t, err, "eastus answered before the context ended")
					assert.Equal(t, "eastus", region)
					require.Equal(t, []summary{
						{"westus", failover.OutcomeFailedOver, true},
						{"eastus", failover.OutcomeServed, false},
					}, summarize(attempts))
					synctest.Wait()
					require.Zero(t, r.transport.open.Load(), "an answer's body was left open")
				}
			})
		})
	}
}

// recoverCall runs f and returns what it panicked with.
func recoverCall(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// TestHedgePanicReachesTheCaller: an attempt that panics (in the caller's transport, say) panics on the
// request's goroutine, as it would without hedging, and is not reported; the others are canceled with the cause
// "another attempt of the request panicked" and reported canceled, not lost, once they have ended.
func TestHedgePanicReachesTheCaller(t *testing.T) {
	t.Run("in the hedge", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
			east := r.regions[0]
			east.Script(failovertest.Reply{Delay: 5 * time.Second})
			r.panicFor("westus", func(*http.Request) {})

			var rec recorder
			start := time.Now()
			p := recoverCall(func() { _, _ = r.client.ChatCompletion(rec.context(t.Context()), hello()) })
			assert.Equal(t, hedgePanic{"westus"}, p, "the transport's panic reached the caller's goroutine")
			assert.Equal(t, 100*time.Millisecond, time.Since(start))
			assert.Equal(t, []summary{{"eastus", failover.OutcomeCanceled, false}}, summarize(rec.list()))
			synctest.Wait()
			got := east.requests()
			require.Len(t, got, 1)
			assert.True(t, got[0].canceled, "the other attempt was ended")
			assert.Equal(t, start.Add(100*time.Millisecond), got[0].returned)
			assert.Equal(t, []string{panickedMessage}, messages(r.causes("eastus")))

			// The client goes on: nothing was left probing, and the next request is served.
			r.panicFor("westus", nil)
			content, _, _, err := r.chat(t.Context())
			require.NoError(t, err)
			assert.Equal(t, "Hello from eastus.", content)
		})
	})
	t.Run("in the first attempt, during the race", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
			west := r.regions[1]
			west.Script(failovertest.Hang())
			r.panicFor("eastus", func(req *http.Request) {
				select {
				case <-time.After(200 * time.Millisecond):
				case <-req.Context().Done():
				}
			})

			var rec recorder
			start := time.Now()
			p := recoverCall(func() { _, _ = r.client.ChatCompletion(rec.context(t.Context()), hello()) })
			assert.Equal(t, hedgePanic{"eastus"}, p)
			assert.Equal(t, 200*time.Millisecond, time.Since(start))
			assert.Equal(t, []summary{{"westus", failover.OutcomeCanceled, true}}, summarize(rec.list()))
			synctest.Wait()
			got := west.requests()
			require.Len(t, got, 1)
			assert.True(t, got[0].canceled, "the hedge was ended")
			assert.Equal(t, start.Add(200*time.Millisecond), got[0].returned)
			assert.Equal(t, []string{panickedMessage}, messages(r.causes("westus")))
		})
	})
}

// TestHedgePanicOfALoser: the hedge's transport panics once its request is canceled, because the first attempt
// won or the caller gave up. The panic is the caller's, as it would be without hedging, and the attempt that
// panicked is not reported (least of all as an empty attempt).
func TestHedgePanicOfALoser(t *testing.T) {
	cases := map[string]struct {
		east func(cancel func()) failovertest.Reply
		want []summary // the attempts reported; nil: any, but westus's
	}{
		"the other won": {east: func(func()) failovertest.Reply {
			return failovertest.Reply{Delay: 300 * time.Millisecond}
		}},
		"the caller canceled": {east: func(cancel func()) failovertest.Reply {
			time.AfterFunc(300*time.Millisecond, cancel)
			return failovertest.Hang()
		}, want: []summary{{"eastus", failover.OutcomeCanceled, false}}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				r.regions[0].Script(tc.east(cancel))
				r.panicFor("westus", func(req *http.Request) { <-req.Context().Done() })

				var rec recorder
				var err error
				start := time.Now()
				p := recoverCall(func() { _, err = r.client.ChatCompletion(rec.context(ctx), hello()) })
				t.Logf("recovered %v, err %v, attempts %v", p, err, rec.list())
				assert.Equal(t, hedgePanic{"westus"}, p, "the panic of the canceled hedge was swallowed")
				assert.Equal(t, 300*time.Millisecond, time.Since(start))
				for _, a := range rec.list() {
					assert.NotEmpty(t, a.Region, "an attempt that panicked is reported as an empty attempt: %+v", a)
					assert.NotEqual(t, "westus", a.Region, "the attempt that panicked is reported: %+v", a)
				}
				if tc.want != nil {
					assert.Equal(t, tc.want, summarize(rec.list()))
				}
				synctest.Wait()
				assert.Zero(t, r.transport.open.Load(), "an answer's body was left open")
			})
		})
	}
}

// --- Configuration --------------------------------------------------------------------------------------------

func TestHedgingConfigErrors(t *testing.T) {
	regions := []failover.Region{{Name: "eastus", Endpoint: "https://eastus.openai.azure.com", APIKey: "k"}}
	cases := []struct {
		name    string
		hedging failover.Hedging
		field   string
	}{
		{"negative delay", failover.Hedging{Delay: -time.Second}, "WithHedging(Delay)"},
		{"percentile 1", failover.Hedging{Delay: time.Second, Percentile: 1}, "WithHedging(Percentile)"},
		{"percentile -0.1", failover.Hedging{Delay: time.Second, Percentile: -0.1}, "WithHedging(Percentile)"},
		{"neither delay nor percentile", failover.Hedging{MaxHedges: 2}, "WithHedging"},
		{"max hedges -1", failover.Hedging{Delay: time.Second, MaxHedges: -1}, "WithHedging(MaxHedges)"},
		{"max share 1.5", failover.Hedging{Delay: time.Second, MaxShare: 1.5}, "WithHedging(MaxShare)"},
		{"max share -0.5", failover.Hedging{Delay: time.Second, MaxShare: -0.5}, "WithHedging(MaxShare)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := failover.New(regions, failover.WithHedging(tc.hedging))
			assert.Nil(t, c)
			require.ErrorIs(t, err, failover.ErrConfig)
			var ce *failover.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, []string{tc.field}, configFields(err))
		})
	}
	t.Run("all at once", func(t *testing.T) {
		_, err := failover.New(regions, failover.WithHedging(failover.Hedging{Delay: -1, Percentile: 2, MaxHedges: -1, MaxShare: 2}))
		assert.Equal(t, []string{"WithHedging(Delay)", "WithHedging(Percentile)", "WithHedging(MaxHedges)",
			"WithHedging(MaxShare)"}, configFields(err))
	})
	for _, h := range []failover.Hedging{
		{Delay: time.Millisecond},
		{Percentile: 0.5},
		{Delay: time.Second, Percentile: 0.99, MaxHedges: 5, MaxShare: 1},
	} {
		c, err := failover.New(regions, failover.WithHedging(h))
		require.NoError(t, err, "%+v", h)
		c.CloseIdleConnections()
	}
}

func TestHedgingEnvErrors(t *testing.T) {
	cases := []struct {
		delay, percentile string
		fields            []string
	}{
		{"abc", "", []string{failover.EnvHedgeDelay}},
		{"-1s", "", []string{failover.EnvHedgeDelay}},
		{"", "95", []string{failover.EnvHedgePercentile}},
		{"", "0", []string{failover.EnvHedgePercentile}},
		{"", "x", []string{failover.EnvHedgePercentile}},
		{"abc", "95", []string{failover.EnvHedgeDelay, failover.EnvHedgePercentile}},
	}
	for _, tc := range cases {
		t.Run(tc.delay+"/"+tc.percentile, func(t *testing.T) {
			isolateEnv(t)
			t.Setenv("AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com")
			t.Setenv("AZURE_OPENAI_API_KEY_1", secretKey)
			t.Setenv(failover.EnvHedgeDelay, tc.delay)
			t.Setenv(failover.EnvHedgePercentile, tc.percentile)
			c, err := failover.NewFromEnv()
			assert.Nil(t, c)
			require.ErrorIs(t, err, failover.ErrConfig)
			assert.Equal(t, tc.fields, configFields(err))
			assert.NotContains(t, err.Error(), secretKey)
		})
	}
}

// TestHedgingFromEnv: FAILOVER_HEDGE_DELAY turns hedging on, with the default budget (see TestHedgeBudget): of a
// new client's slow requests, the first 11 are hedged, then the 21st.
func TestHedgingFromEnv(t *testing.T) {
	isolateEnv(t)
	synctest.Test(t, func(t *testing.T) {
		probe := newRig(t, []string{"eastus", "westus"}) // only for its servers and network
		for i, s := range probe.regions {
			n := fmt.Sprint(i + 1)
			t.Setenv("AZURE_OPENAI_ENDPOINT_"+n, s.url)
			t.Setenv("AZURE_OPENAI_API_KEY_"+n, s.Key)
			t.Setenv("AZURE_OPENAI_REGION_"+n, s.Name)
		}
		t.Setenv(failover.EnvModel, "gpt-4o")
		t.Setenv(failover.EnvHedgeDelay, "250ms")
		client, err := failover.NewFromEnv(failover.WithHTTPClient(&http.Client{Transport: probe.transport}))
		require.NoError(t, err)
		defer client.CloseIdleConnections()
		east, west := probe.regions[0], probe.regions[1]
		east.SetDefault(failovertest.Reply{Delay: time.Second})
		var hedged []int
		for i := 1; i <= 25; i++ {
			start := time.Now()
			content, err := client.ChatCompletion(t.Context(), hello())
			require.NoError(t, err)
			if content == "Hello from westus." {
				hedged = append(hedged, i)
				assert.Equal(t, 250*time.Millisecond, time.Since(start), "request %d", i)
				continue
			}
			assert.Equal(t, "Hello from eastus.", content)
			assert.Equal(t, time.Second, time.Since(start), "request %d", i)
		}
		assert.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 21}, hedged)
		assert.Equal(t, 12, west.Requests())
	})
}

func TestHedgeAttemptString(t *testing.T) {
	hedge := failover.Attempt{Region: "westus", Status: 200, Outcome: failover.OutcomeServed, Hedged: true,
		Duration: 150 * time.Millisecond}
	assert.Equal(t, "westus: 200 hedge served after 150ms", hedge.String())
	lost := failover.Attempt{Region: "eastus", Outcome: failover.OutcomeLost, Duration: 150 * time.Millisecond,
		Err: errors.New(lostMessage)}
	assert.Equal(t, "eastus: lost after 150ms: "+lostMessage, lost.String())
	assert.Equal(t, "lost", failover.OutcomeLost.String())

	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, []string{"eastus", "westus"}, failover.WithHedging(hedge100))
		r.regions[0].Script(failovertest.Reply{Delay: 5 * time.Second})
		_, attempts, _, err := r.chat(t.Context())
		require.NoError(t, err)
		require.Len(t, attempts, 2)
		assert.Equal(t, "eastus: lost after 100ms: "+lostMessage, attempts[0].String())
		assert.Equal(t, "westus: 200 hedge served after 0s", attempts[1].String())
	})
}

// TestHedgeMaxHedgesUnbounded: any MaxHedges New accepts works, math.MaxInt ("hedge to every region") included:
// a huge MaxHedges neither panics nor sizes a channel past the regions left to race, and the hedge serves.
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
// with refused and canceled attempts (docs/errors-and-streams.md, WithLogger), not at Warn, where an alert on failures would fire for
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
