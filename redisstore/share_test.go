package redisstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/internal/redistest"
)

// These tests run replicas (Clients) against a real Redis. The regions are fakes on an in-memory network inside
// synctest bubbles, so rests of 30 s pass at once and exactly; Redis itself is a real server over loopback TCP.

// fleet is a pair of fake regions and the replicas that share one Redis in front of them.
type fleet struct {
	east, west *failovertest.Server
	replicas   []*failover.Client
	prefix     string // of the keys the replicas share
}

func newFleet(t *testing.T, url string, replicas int, opts ...failover.Option) *fleet {
	t.Helper()
	network := failovertest.NewNetwork()
	t.Cleanup(network.Close)
	f := &fleet{
		east: failovertest.NewRegion("eastus", failovertest.OnNetwork(network)),
		west: failovertest.NewRegion("westus", failovertest.OnNetwork(network)),
	}
	t.Cleanup(f.east.Close)
	t.Cleanup(f.west.Close)
	p := prefix(t)
	for range replicas {
		regions := []failover.Region{
			{Name: "eastus", Endpoint: f.east.URL, APIKey: f.east.Key},
			{Name: "westus", Endpoint: f.west.URL, APIKey: f.west.Key},
		}
		base := []failover.Option{failover.WithModel("gpt-4o"), failover.WithHTTPClient(network.Client()),
			failover.WithMaxWait(0), failover.WithStore(open(t, url, p))}
		c, err := failover.New(regions, append(base, opts...)...)
		require.NoError(t, err)
		t.Cleanup(c.CloseIdleConnections)
		f.replicas = append(f.replicas, c)
	}
	return f
}

func ask(t *testing.T, c *failover.Client, model string) string {
	t.Helper()
	resp, err := c.CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Model: model,
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}}})
	require.NoError(t, err)
	return resp.Choices[0].Message.Content
}

// health is Client.Health without latency, which each replica measures for itself.
func health(c *failover.Client) []failover.RegionHealth {
	h := c.Health()
	for i := range h {
		h[i].Latency = 0
	}
	return h
}

func TestTwoReplicasShareARest(t *testing.T) {
	url := redisURL(t)
	synctest.Test(t, func(t *testing.T) {
		f := newFleet(t, url, 2)
		a, b := f.replicas[0], f.replicas[1]
		f.east.Script(failovertest.RateLimited(30 * time.Second))

		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A met the 429 and failed over")
		rested := time.Now()
		for range 5 {
			assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"))
		}
		assert.Equal(t, 1, f.east.Requests(), "B sent nothing to the region A found throttled")

		want := []failover.ModelHealth{{Model: "gpt-4o", State: failover.StateResting,
			Until: rested.Add(30 * time.Second), Reason: "429 rate limited"}}
		require.Equal(t, want, health(a)[0].Models)
		assert.Equal(t, health(a), health(b), "both replicas see the same picture")

		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o-mini"), "only the throttled model rests")

		time.Sleep(29 * time.Second)
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"), "still resting a second before the end")
		time.Sleep(time.Second)
		assert.Equal(t, "Hello from eastus.", ask(t, b, "gpt-4o"), "back when the rest ends")
		assert.Equal(t, "Hello from eastus.", ask(t, a, "gpt-4o"))
		assert.Equal(t, health(a), health(b))
		assert.Empty(t, health(b)[0].Models)
	})
}

func TestMissingModelIsShared(t *testing.T) {
	url := redisURL(t)
	synctest.Test(t, func(t *testing.T) {
		f := newFleet(t, url, 2)
		f.east.Script(failovertest.DeploymentNotFound())
		assert.Equal(t, "Hello from westus.", ask(t, f.replicas[0], "o3"))
		assert.Equal(t, "Hello from westus.", ask(t, f.replicas[1], "o3"))
		assert.Equal(t, 1, f.east.Requests())
		m := health(f.replicas[1])[0].Models
		require.Len(t, m, 1)
		assert.Equal(t, failover.StateMissing, m[0].State)
	})
}

func TestOneProbeAmongTenReplicas(t *testing.T) {
	url := redisURL(t)
	synctest.Test(t, func(t *testing.T) {
		f := newFleet(t, url, 10, failover.WithBackoff(func(int) time.Duration { return 10 * time.Second }))
		f.east.Script(failovertest.InternalError())
		assert.Equal(t, "Hello from westus.", ask(t, f.replicas[0], "gpt-4o"))
		for _, r := range f.replicas[1:] {
			assert.Equal(t, "Hello from westus.", ask(t, r, "gpt-4o"), "the rest is shared")
		}
		require.Equal(t, 1, f.east.Requests())

		// The rest is over and every replica knows the region is half-open. The region holds its answer to the
		// probe for 5 s while all ten replicas ask at once: only one of them may be that probe.
		time.Sleep(10 * time.Second)
		f.east.Script(failovertest.Slow(5*time.Second, failovertest.OK("Hello from eastus.")))
		var wg sync.WaitGroup
		answers := make(chan string, len(f.replicas))
		for _, r := range f.replicas {
			wg.Go(func() { answers <- ask(t, r, "gpt-4o") })
		}
		wg.Wait()
		close(answers)
		count := map[string]int{}
		for a := range answers {
			count[a]++
		}
		assert.Equal(t, 2, f.east.Requests(), "exactly one probe reached the recovering region")
		assert.Equal(t, map[string]int{"Hello from eastus.": 1, "Hello from westus.": 9}, count)

		// The probe was served, and said so through Redis: a second later every replica is back on the region,
		// at once, with no probe of its own.
		time.Sleep(time.Second)
		f.east.Script(failovertest.Slow(5*time.Second, failovertest.OK("Hello from eastus.")))
		answers = make(chan string, len(f.replicas))
		for _, r := range f.replicas {
			wg.Go(func() { answers <- ask(t, r, "gpt-4o") })
		}
		wg.Wait()
		close(answers)
		count = map[string]int{}
		for a := range answers {
			count[a]++
		}
		assert.Equal(t, map[string]int{"Hello from eastus.": 10}, count, "no replica waited for a probe of its own")
		for _, r := range f.replicas {
			assert.Empty(t, health(r)[0].Models)
		}
	})
}

func TestAFailedProbeRestsTheFleetAgain(t *testing.T) {
	url := redisURL(t)
	synctest.Test(t, func(t *testing.T) {
		f := newFleet(t, url, 3, failover.WithBackoff(func(n int) time.Duration { return time.Duration(n) * 10 * time.Second }))
		f.east.SetDefault(failovertest.InternalError())
		ask(t, f.replicas[0], "gpt-4o")
		for _, r := range f.replicas {
			ask(t, r, "gpt-4o")
		}
		require.Equal(t, 1, f.east.Requests())
		time.Sleep(10 * time.Second)
		ask(t, f.replicas[1], "gpt-4o") // the probe, which fails: a rest of 20 s (the second failure)
		require.Equal(t, 2, f.east.Requests())
		probed := time.Now()
		for _, r := range f.replicas {
			ask(t, r, "gpt-4o")
		}
		assert.Equal(t, 2, f.east.Requests(), "the failed probe's longer rest holds every replica")
		for _, r := range f.replicas {
			m := health(r)[0].Models
			require.Len(t, m, 1)
			assert.Equal(t, probed.Add(20*time.Second), m[0].Until)
		}
	})
}

// TestRedisKilledAndRestarted runs in real time against a Redis of its own, which it kills and starts again.
// The regions' rests are 30 s: none ends during the test.
func TestRedisKilledAndRestarted(t *testing.T) {
	srv := redistest.Own(t)
	var logA, logB safeBuffer
	timing := failover.WithStoreTiming(failover.StoreTiming{Refresh: -1, Retry: time.Millisecond})
	f := newFleetLogged(t, srv.URL(), []*safeBuffer{&logA, &logB}, timing)
	a, b := f.replicas[0], f.replicas[1]

	f.east.Script(failovertest.RateLimited(30 * time.Second))
	assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"))
	assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o"))
	require.Equal(t, 1, f.east.Requests(), "shared while Redis runs")

	srv.Kill()
	for range 5 {
		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o"), "A keeps its own rest")
	}
	f.east.Script(failovertest.RateLimited(30*time.Second), failovertest.RateLimited(30*time.Second))
	assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o-mini"))
	assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4o-mini"), "nothing shared while Redis is down, and nothing fails")
	assert.Equal(t, 3, f.east.Requests(), "each replica paid its own 429 while Redis was down")
	for range 3 {
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4o-mini"))
	}
	assert.Equal(t, 3, f.east.Requests(), "B still rests what it learned alone")

	require.NoError(t, srv.Restart())
	f.east.Script(failovertest.RateLimited(30 * time.Second))
	// The first request after the restart may meet a connection the old server left; Retry is 1 ms, so the
	// next one uses a new connection. Bounded: four requests.
	for range 4 {
		assert.Equal(t, "Hello from westus.", ask(t, a, "gpt-4.1"))
	}
	require.Equal(t, 4, f.east.Requests())
	for range 3 {
		assert.Equal(t, "Hello from westus.", ask(t, b, "gpt-4.1"))
	}
	assert.Equal(t, 4, f.east.Requests(), "sharing resumed: B learned A's rest from the restarted Redis")

	for _, l := range []*safeBuffer{&logA, &logB} {
		out := l.String()
		assert.Equal(t, 1, strings.Count(out, "store unreachable"), "logged once per outage:\n%s", out)
		assert.Equal(t, 1, strings.Count(out, "store reachable again"), "recovery logged:\n%s", out)
		assert.NotContains(t, out, f.east.Key)
	}
}

func newFleetLogged(t *testing.T, url string, logs []*safeBuffer, opts ...failover.Option) *fleet {
	t.Helper()
	f := &fleet{east: failovertest.NewRegion("eastus"), west: failovertest.NewRegion("westus")}
	t.Cleanup(f.east.Close)
	t.Cleanup(f.west.Close)
	p := prefix(t)
	f.prefix = p
	for _, l := range logs {
		regions := []failover.Region{
			{Name: "eastus", Endpoint: f.east.URL, APIKey: f.east.Key},
			{Name: "westus", Endpoint: f.west.URL, APIKey: f.west.Key},
		}
		base := []failover.Option{failover.WithModel("gpt-4o"), failover.WithMaxWait(0),
			failover.WithStore(open(t, url, p)), failover.WithLogger(slog.New(slog.NewTextHandler(l, nil)))}
		c, err := failover.New(regions, append(base, opts...)...)
		require.NoError(t, err)
		t.Cleanup(c.CloseIdleConnections)
		f.replicas = append(f.replicas, c)
	}
	return f
}

type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ = context.Background

// TestRedisHoldsNoSecret reads back everything a fleet wrote to Redis: no key, no endpoint, and every key under
// the fleet's prefix.
func TestRedisHoldsNoSecret(t *testing.T) {
	url := redisURL(t)
	var logA, logB safeBuffer
	f := newFleetLogged(t, url, []*safeBuffer{&logA, &logB}, failover.WithStoreTiming(failover.StoreTiming{Refresh: -1}),
		failover.WithBackoff(func(int) time.Duration { return time.Minute }))
	f.east.Script(failovertest.RateLimited(30*time.Second), failovertest.DeploymentNotFound())
	f.west.Script(failovertest.InternalError())
	for _, r := range []struct {
		replica int
		model   string
	}{{0, "gpt-4o"}, {1, "o3"}, {1, "gpt-4o-mini"}} {
		// The first fails everywhere (429 and 500); the others are served. Only what Redis holds matters here.
		_, _ = f.replicas[r.replica].CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Model: r.model,
			Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}}})
	}

	rdb := rawClient(t, url)
	p := f.prefix
	keys, err := rdb.Keys(t.Context(), p+":*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2, "one hash per region that rests: %v", keys)
	var written strings.Builder
	for _, k := range keys {
		assert.Regexp(t, `^`+regexp.QuoteMeta(p)+`:(eastus|westus)@[0-9a-f]{16}$`, k)
		fields, err := rdb.HGetAll(t.Context(), k).Result()
		require.NoError(t, err)
		for field, value := range fields {
			written.WriteString(k + " " + field + " " + value + "\n")
		}
	}
	out := written.String()
	assert.Contains(t, out, `"kind":"throttled"`)
	assert.Contains(t, out, `"kind":"missing"`)
	assert.Contains(t, out, `"kind":"failing"`)
	for _, s := range []*failovertest.Server{f.east, f.west} {
		host := strings.TrimPrefix(s.URL, "http://")
		assert.NotContains(t, out, s.Key)
		assert.NotContains(t, out, host)
	}
}
