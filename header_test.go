package failover_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSilentStreamRegionIsLeftAtTheHeaderTimeout: a region that takes a streamed request and says nothing, not
// even its headers, is left after the header timeout (10 s by default), not the 5-minute cold-start limit, and
// rests, though it has no latency history at all.
func TestSilentStreamRegionIsLeftAtTheHeaderTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		servers[0].Script(failovertest.Hang())
		var rec recorder
		start := time.Now()
		text := streamText(rec.context(t.Context()), t, client)
		assert.Equal(t, "Hello from westus.", text)
		assert.Equal(t, failover.DefaultHeaderTimeout, time.Since(start))
		attempts := rec.list()
		require.Len(t, attempts, 2)
		assert.ErrorIs(t, attempts[0].Err, failover.ErrAttemptTimeout)
		assert.ErrorContains(t, attempts[0].Err, "no response headers after 10s")

		rec = recorder{}
		_, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, []string{"westus"}, rec.regions(), "the silent region rests")
	})
}

// TestSlowFirstTokenIsNotCutByTheHeaderTimeout: a stream whose headers came at once but whose first content takes
// longer than the header timeout (a reasoning model thinking) is served: only the attempt limit bounds that wait.
func TestSlowFirstTokenIsNotCutByTheHeaderTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithHeaderTimeout(time.Second))
		servers[0].Script(failovertest.Reply{BodyDelay: 90 * time.Second})
		var rec recorder
		start := time.Now()
		text := streamText(rec.context(t.Context()), t, client)
		assert.Equal(t, "Hello from eastus.", text)
		assert.Equal(t, 90*time.Second, time.Since(start))
		assert.Equal(t, []string{"eastus"}, rec.regions())
	})
}

// TestSlowNonStreamingAnswerIsNotCutByTheHeaderTimeout: a non-streaming call's headers come with its finished
// answer, so once connected only the attempt limit bounds it: a 70 s answer is served with a 1 s header timeout.
func TestSlowNonStreamingAnswerIsNotCutByTheHeaderTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithHeaderTimeout(time.Second))
		servers[0].Script(failovertest.Reply{Delay: 70 * time.Second})
		var rec recorder
		text, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", text)
		assert.Equal(t, []string{"eastus"}, rec.regions())
	})
}

// TestUnreachableRegionIsLeftAtTheHeaderTimeout: a region whose connection never completes (a blackholed
// address) is left after the header timeout, for a non-streaming call too.
func TestUnreachableRegionIsLeftAtTheHeaderTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		servers := startRegions(t, []string{"eastus", "westus"}, failovertest.OnNetwork(network))
		transport := network.Client().Transport.(*http.Transport).Clone()
		dial := transport.DialContext
		east := strings.TrimPrefix(servers[0].URL, "http://")
		transport.DialContext = func(ctx context.Context, netw, addr string) (net.Conn, error) {
			if addr == east {
				// As net.Dialer does for a real dial, which this one stands for: tell the trace it began.
				if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.ConnectStart != nil {
					trace.ConnectStart("tcp", addr)
				}
				<-ctx.Done() // a SYN that nobody answers
				return nil, ctx.Err()
			}
			return dial(ctx, netw, addr)
		}
		t.Cleanup(transport.CloseIdleConnections)
		client := newClient(t, regionsOf(servers...), failover.WithHTTPClient(&http.Client{Transport: transport}),
			failover.WithHeaderTimeout(3*time.Second))
		var rec recorder
		start := time.Now()
		text, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", text)
		assert.Equal(t, 3*time.Second, time.Since(start))
		attempts := rec.list()
		require.Len(t, attempts, 2)
		assert.ErrorIs(t, attempts[0].Err, failover.ErrAttemptTimeout)
		assert.ErrorContains(t, attempts[0].Err, "no connection after 3s")
	})
}

// TestTransportWithoutTracingKeepsTheAttemptLimit: a transport that reports no connection events (a custom
// RoundTripper) cannot be timed for its connection, so a slow non-streaming answer through it is bounded by the
// attempt limit alone, never cut by the header timeout it cannot see.
func TestTransportWithoutTracingKeepsTheAttemptLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := transportFunc(func(req *http.Request) (*http.Response, error) {
			if req.Body != nil {
				req.Body.Close()
			}
			select {
			case <-time.After(30 * time.Second):
			case <-req.Context().Done():
				return nil, req.Context().Err()
			}
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
				Body:    io.NopCloser(strings.NewReader(`{"id":"1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"late"},"finish_reason":"stop"}]}`)),
				Request: req}, nil
		})
		client := newClient(t, []failover.Region{{Name: "eastus", Endpoint: "https://east.example", APIKey: "k"}},
			failover.WithHTTPClient(&http.Client{Transport: slow}), failover.WithHeaderTimeout(time.Second))
		text, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		assert.Equal(t, "late", text)
	})
}

// TestSettingsRefuseBadValues: a negative limit or an overlong model is refused, naming the option, and so is a
// bad value of its variable, naming the variable without echoing the value.
func TestSettingsRefuseBadValues(t *testing.T) {
	for name, opt := range map[string]failover.Option{
		"WithHeaderTimeout":     failover.WithHeaderTimeout(-time.Second),
		"WithStreamIdleTimeout": failover.WithStreamIdleTimeout(-time.Second),
		"WithModel":             failover.WithModel(strings.Repeat("m", failover.MaxModelNameBytes+1)),
	} {
		_, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: "https://east.example", APIKey: "k"}}, opt)
		require.ErrorIs(t, err, failover.ErrConfig)
		assert.Equal(t, []string{name}, configFields(err))
	}

	t.Chdir(t.TempDir()) // no .env here
	t.Setenv(failover.EnvEndpoint+"_1", "https://east.example")
	t.Setenv(failover.EnvAPIKey+"_1", "k")
	for _, bad := range []struct{ name, value string }{
		{failover.EnvHeaderTimeout, "soon"}, {failover.EnvAttemptFloor, "-1s"}, {failover.EnvAttemptBudget, "two"},
		{failover.EnvAttemptBudget, "-1"}, {failover.EnvStreamIdle, "soon"},
		{failover.EnvModel, strings.Repeat("m", failover.MaxModelNameBytes+1)},
	} {
		t.Run(bad.name+"="+bad.value, func(t *testing.T) {
			t.Setenv(bad.name, bad.value)
			_, err := failover.NewFromEnv()
			require.ErrorIs(t, err, failover.ErrConfig)
			assert.Equal(t, []string{bad.name}, configFields(err))
			assert.NotContains(t, err.Error(), bad.value, "the value is not echoed: it may be a pasted secret")
		})
	}
}

// TestLimitsFromTheEnvironment: FAILOVER_HEADER_TIMEOUT, FAILOVER_ATTEMPT_FLOOR and FAILOVER_ATTEMPT_BUDGET
// change what a client built by NewFromEnv does.
func TestLimitsFromTheEnvironment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		servers := startRegions(t, []string{"eastus", "westus"}, failovertest.OnNetwork(network))
		t.Chdir(t.TempDir())
		for i, s := range servers {
			n := string(rune('1' + i))
			t.Setenv(failover.EnvEndpoint+"_"+n, s.URL)
			t.Setenv(failover.EnvAPIKey+"_"+n, s.Key)
			t.Setenv(failover.EnvRegionName+"_"+n, s.Name)
		}
		t.Setenv(failover.EnvModel, "gpt-4o")
		t.Setenv(failover.EnvHeaderTimeout, "2s")
		t.Setenv(failover.EnvAttemptFloor, "3s")
		t.Setenv(failover.EnvAttemptBudget, "2")
		client, err := failover.NewFromEnv(failover.WithHTTPClient(network.Client()))
		require.NoError(t, err)
		t.Cleanup(func() { client.Close() })

		// The header timeout: a silent stream is left after 2 s.
		servers[0].Script(failovertest.Hang())
		start := time.Now()
		streamText(t.Context(), t, client)
		assert.Equal(t, 2*time.Second, time.Since(start))

		// The budget: two upstream calls, so a request that meets two 500s ends with them instead of waiting.
		time.Sleep(time.Minute) // eastus's rest passes
		servers[0].Script(failovertest.InternalError())
		servers[1].Script(failovertest.InternalError())
		_, err = client.ChatCompletion(t.Context(), hello())
		var exhausted *failover.ExhaustedError
		require.ErrorAs(t, err, &exhausted)
		assert.Equal(t, 2, exhausted.Budget, "the budget of 2 ended it")
		assert.Len(t, exhausted.Attempts, 2)

		// The floor: after 20 answers in 0.5 s (4 × p99 = 2 s), a silent call is left at the 3 s floor.
		time.Sleep(time.Minute)
		for range 20 {
			servers[0].Script(failovertest.Reply{Delay: 500 * time.Millisecond})
			_, err := client.ChatCompletion(t.Context(), hello())
			require.NoError(t, err)
		}
		servers[0].Script(failovertest.Hang())
		var rec recorder
		start = time.Now()
		text, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", text)
		assert.Equal(t, 3*time.Second, time.Since(start))
		assert.ErrorContains(t, rec.list()[0].Err, "after 3s")
	})
}
