package failover

import (
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// latencyClient builds a client over fake regions on an in-memory network, without hedging.
func latencyClient(t *testing.T, names []string, opts ...Option) ([]*failovertest.Server, *Client) {
	t.Helper()
	network := failovertest.NewNetwork()
	t.Cleanup(network.Close)
	servers := make([]*failovertest.Server, len(names))
	regions := make([]Region, len(names))
	for i, name := range names {
		servers[i] = failovertest.NewRegion(name, failovertest.OnNetwork(network))
		t.Cleanup(servers[i].Close)
		regions[i] = Region{Name: name, Endpoint: servers[i].URL, APIKey: servers[i].Key}
	}
	c, err := New(regions, append([]Option{WithModel("gpt-4o"), WithHTTPClient(network.Client())}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	require.Nil(t, c.engine.hedger, "these tests are of latencies sampled without hedging")
	return servers, c
}

// latenciesOf returns the samples taken and the attempts cut of kind on the i-th backend, under its mutex.
func latenciesOf(c *Client, i int, kind latencyKind) (n, cut int, recent []time.Duration) {
	h := &c.engine.backends[i].health
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.latencies[kind]
	if l == nil {
		return 0, 0, nil
	}
	return l.n, l.cut, append([]time.Duration(nil), l.samples[:min(l.n, latencySamples)]...)
}

func hi() []openai.ChatCompletionMessage {
	return []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hi"}}
}

func TestLatenciesAreSampledWithoutHedging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, c := latencyClient(t, []string{"eastus"})
		servers[0].Script(
			failovertest.Slow(100*time.Millisecond, failovertest.OK("")),
			failovertest.Slow(200*time.Millisecond, failovertest.OK("")),
			failovertest.Slow(300*time.Millisecond, failovertest.OK("")),
		)
		for range 3 {
			_, err := c.ChatCompletion(t.Context(), hi())
			require.NoError(t, err)
		}
		n, cut, samples := latenciesOf(c, 0, latencyKind{model: "gpt-4o"})
		assert.Equal(t, 3, n, "every served attempt is sampled, hedging or not")
		assert.Zero(t, cut)
		assert.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}, samples)
		n, _, _ = latenciesOf(c, 0, latencyKind{model: "gpt-4o", stream: true})
		assert.Zero(t, n, "no stream was served")
	})
}

func TestLatenciesAreSampledOverRealTime(t *testing.T) {
	// The same outside a bubble, over loopback TCP.
	region := failovertest.NewRegion("eastus")
	t.Cleanup(region.Close)
	c, err := New([]Region{{Name: "eastus", Endpoint: region.URL, APIKey: region.Key}}, WithModel("gpt-4o"))
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	for range 3 {
		_, err := c.ChatCompletion(t.Context(), hi())
		require.NoError(t, err)
	}
	n, _, samples := latenciesOf(c, 0, latencyKind{model: "gpt-4o"})
	assert.Equal(t, 3, n)
	for _, d := range samples {
		assert.Positive(t, d)
	}
}

func TestStreamLatencyIsTimeToFirstContent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, c := latencyClient(t, []string{"eastus"})
		stalled := failovertest.OK("one two three")
		stalled.BodyDelay = 250 * time.Millisecond // headers at once, the events after
		servers[0].Script(stalled)

		stream, err := c.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Messages: hi()})
		require.NoError(t, err)
		defer stream.Close()
		for {
			_, err := stream.Recv()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
		}
		n, cut, samples := latenciesOf(c, 0, latencyKind{model: "gpt-4o", stream: true})
		assert.Equal(t, 1, n, "a served stream is sampled under stream: true")
		assert.Zero(t, cut)
		assert.Equal(t, []time.Duration{250 * time.Millisecond}, samples, "the time to the first content")
		n, _, _ = latenciesOf(c, 0, latencyKind{model: "gpt-4o"})
		assert.Zero(t, n, "and not as a whole answer")
	})
}

func TestLatenciesCountAnAttemptCutByTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, c := latencyClient(t, []string{"eastus", "westus"}, WithAttemptTimeout(5*time.Second))
		servers[0].Script(failovertest.Hang())

		start := time.Now()
		content, err := c.ChatCompletion(t.Context(), hi())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", content)
		assert.Equal(t, 5*time.Second, time.Since(start))

		n, cut, _ := latenciesOf(c, 0, latencyKind{model: "gpt-4o"})
		assert.Equal(t, 1, cut, "the attempt the timeout cut is counted")
		assert.Zero(t, n, "and adds no sample: a learned limit must not grow with the cuts of a silent region")
		n, cut, _ = latenciesOf(c, 1, latencyKind{model: "gpt-4o"})
		assert.Equal(t, 1, n, "the region that served is sampled")
		assert.Zero(t, cut)
	})
}

func TestLatenciesCountAStreamCutByTheTimeoutAsAStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, c := latencyClient(t, []string{"eastus", "westus"}, WithAttemptTimeout(5*time.Second))
		servers[0].Script(failovertest.Hang())

		stream, err := c.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Messages: hi()})
		require.NoError(t, err)
		require.NoError(t, stream.Close())

		n, cut, _ := latenciesOf(c, 0, latencyKind{model: "gpt-4o", stream: true})
		assert.Equal(t, 1, cut, "a stream the timeout cut counts under stream: true")
		assert.Zero(t, n)
		_, cut, _ = latenciesOf(c, 0, latencyKind{model: "gpt-4o"})
		assert.Zero(t, cut)
		n, _, _ = latenciesOf(c, 1, latencyKind{model: "gpt-4o", stream: true})
		assert.Equal(t, 1, n)
	})
}
