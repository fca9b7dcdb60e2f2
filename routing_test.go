package failover_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// routingHealth returns the health of the named region, failing the test when the client has none of that name.
func routingHealth(t *testing.T, client *failover.Client, region string) failover.RegionHealth {
	t.Helper()
	for _, h := range client.Health() {
		if h.Region == region {
			return h
		}
	}
	t.Fatalf("no region %q in %v", region, client.Regions())
	return failover.RegionHealth{}
}

// routeChat sends one chat request and returns the regions it tried, the serving one last.
func routeChat(t *testing.T, client *failover.Client) []string {
	t.Helper()
	var rec recorder
	_, err := client.ChatCompletion(rec.context(t.Context()), hello())
	require.NoError(t, err)
	return rec.regions()
}

func routeEmbeddings(t *testing.T, client *failover.Client, rec *recorder) openai.EmbeddingResponse {
	t.Helper()
	resp, err := client.CreateEmbeddings(rec.context(t.Context()),
		openai.EmbeddingRequest{Model: "text-embedding-3-small", Input: []string{"hi"}})
	require.NoError(t, err)
	return resp
}

func TestStrategyRoundRobinSpreadsEvenly(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus", "swedencentral"})
	client := newClient(t, regionsOf(servers...), failover.WithStrategy(failover.StrategyRoundRobin))

	var first []string
	for i := range 300 {
		tried := routeChat(t, client)
		require.Len(t, tried, 1, "every region serves: one attempt per request")
		if i < 3 {
			first = append(first, tried[0])
		}
	}
	assert.ElementsMatch(t, []string{"eastus", "westus", "swedencentral"}, first, "three requests in a row start at three regions")
	for _, s := range servers {
		assert.Equal(t, 100, s.Requests(), s.Name)
	}
	assert.Equal(t, []string{"eastus", "westus", "swedencentral"}, client.Regions(), "the strategy does not change Regions")
}

func TestStrategyWeightedSharesByWeightWithinAPriority(t *testing.T) {
	servers := startRegions(t, []string{"light", "heavy", "backup"})
	regions := regionsOf(servers...)
	regions[0].Weight = 1
	regions[1].Weight = 3
	regions[2].Priority, regions[2].Weight = 1, 1000 // outweighs both, but its priority comes later
	client := newClient(t, regions, failover.WithStrategy(failover.StrategyWeighted))

	const n = 2000
	for range n {
		require.Len(t, routeChat(t, client), 1)
	}
	light, heavy, backup := servers[0].Requests(), servers[1].Requests(), servers[2].Requests()
	assert.Equal(t, n, light+heavy)
	assert.InDelta(t, 0.75, float64(heavy)/n, 0.05, "light %d, heavy %d", light, heavy)
	assert.Zero(t, backup, "a priority-1 region gets no request while priority-0 regions serve")

	h := routingHealth(t, client, "backup")
	assert.Equal(t, 1, h.Priority)
	assert.Equal(t, 1000, h.Weight)
	assert.Equal(t, 1, routingHealth(t, client, "light").Weight)
}

func TestStrategyWeightedDefaultWeightIsOne(t *testing.T) {
	servers := startRegions(t, []string{"a", "b"})
	client := newClient(t, regionsOf(servers...), failover.WithStrategy(failover.StrategyWeighted))
	for range 400 {
		routeChat(t, client)
	}
	for _, s := range servers {
		assert.InDelta(t, 200, s.Requests(), 60, s.Name) // 6 standard deviations
		assert.Equal(t, 1, routingHealth(t, client, s.Name).Weight, "weight 0 means 1")
	}
}

func TestStrategyLeastLatencyPrefersTheFastRegion(t *testing.T) {
	servers := startRegions(t, []string{"slow", "fast"})
	servers[0].SetDefault(failovertest.Slow(20*time.Millisecond, failovertest.OK("")))
	client := newClient(t, regionsOf(servers...), failover.WithStrategy(failover.StrategyLeastLatency))

	// Neither is measured: the configured order. Then the unmeasured one comes first, so both get measured.
	assert.Equal(t, []string{"slow"}, routeChat(t, client))
	assert.Equal(t, []string{"fast"}, routeChat(t, client))
	routeChat(t, client)

	before := servers[1].Requests()
	const n = 50
	for range n {
		routeChat(t, client)
	}
	fast := servers[1].Requests() - before
	assert.GreaterOrEqual(t, fast, n*9/10, "the fast region serves at least 90%%")
	slow, quick := routingHealth(t, client, "slow").Latency, routingHealth(t, client, "fast").Latency
	assert.GreaterOrEqual(t, slow, 20*time.Millisecond)
	assert.Less(t, quick, slow)
}

func TestPriorityReordersRegions(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus", "swedencentral", "uksouth"})
	regions := regionsOf(servers...)
	regions[0].Priority = 1
	regions[1].Priority = 2
	regions[2].Priority = 0
	regions[3].Priority = 1
	client := newClient(t, regions)

	assert.Equal(t, []string{"swedencentral", "eastus", "uksouth", "westus"}, client.Regions(),
		"by priority, in configured order within one")
	var priorities []int
	for _, h := range client.Health() {
		priorities = append(priorities, h.Priority)
	}
	assert.Equal(t, []int{0, 1, 1, 2}, priorities)

	assert.Equal(t, []string{"swedencentral"}, routeChat(t, client))
	servers[2].Script(failovertest.InternalError())
	var rec recorder
	_, err := client.ChatCompletion(rec.context(t.Context()), hello())
	require.NoError(t, err)
	assert.Equal(t, []string{"swedencentral", "eastus"}, rec.regions(), "the next priority serves when the first fails")
	assert.Equal(t, http.StatusInternalServerError, rec.first().Status)
	assert.Equal(t, []string{"eastus"}, routeChat(t, client), "swedencentral rests after its 500")
	assert.Zero(t, servers[1].Requests())
	assert.Zero(t, servers[3].Requests())
}

func TestPriorityAndStrategyFromEnv(t *testing.T) {
	setRegion := func(n string, s *failovertest.Server) {
		t.Setenv("AZURE_OPENAI_ENDPOINT_"+n, s.URL)
		t.Setenv("AZURE_OPENAI_API_KEY_"+n, s.Key)
		t.Setenv("AZURE_OPENAI_REGION_"+n, s.Name)
	}
	t.Run("priority", func(t *testing.T) {
		isolateEnv(t)
		servers := startRegions(t, []string{"eastus", "westus"})
		setRegion("1", servers[0])
		setRegion("2", servers[1])
		t.Setenv("AZURE_OPENAI_PRIORITY_1", "1")
		t.Setenv("AZURE_OPENAI_PRIORITY_2", "0")
		t.Setenv("FAILOVER_MODEL", "gpt-4o")
		client, err := failover.NewFromEnv()
		require.NoError(t, err)
		t.Cleanup(client.CloseIdleConnections)

		assert.Equal(t, []string{"westus", "eastus"}, client.Regions())
		assert.Equal(t, []string{"westus"}, routeChat(t, client))
		assert.Zero(t, servers[0].Requests())
	})
	t.Run("round-robin", func(t *testing.T) {
		isolateEnv(t)
		servers := startRegions(t, []string{"eastus", "westus"})
		setRegion("1", servers[0])
		setRegion("2", servers[1])
		t.Setenv("AZURE_OPENAI_WEIGHT_2", "5") // read, but ignored by round-robin
		t.Setenv("FAILOVER_STRATEGY", " Round-Robin ")
		t.Setenv("FAILOVER_MAX_WAIT", "0s")
		t.Setenv("FAILOVER_MODEL", "gpt-4o")
		client, err := failover.NewFromEnv()
		require.NoError(t, err)
		t.Cleanup(client.CloseIdleConnections)

		assert.Contains(t, fmtClient(client), "strategy: round-robin")
		assert.Contains(t, fmtClient(client), "maxWait: 0s")
		assert.Equal(t, 5, routingHealth(t, client, "westus").Weight)
		var served []string
		for range 4 {
			served = append(served, routeChat(t, client)...)
		}
		assert.Equal(t, []string{"eastus", "westus", "eastus", "westus"}, served)
	})
}

func fmtClient(c *failover.Client) string { return fmt.Sprint(c) }

func TestBadRoutingSettingsFromEnv(t *testing.T) {
	for _, tc := range []struct{ variable, value string }{
		{"AZURE_OPENAI_PRIORITY_1", "-1"},
		{"AZURE_OPENAI_PRIORITY_1", "first"},
		{"AZURE_OPENAI_WEIGHT_1", "x"},
		{"AZURE_OPENAI_WEIGHT_1", "-1"},
		{"AZURE_OPENAI_WEIGHT_1", "1000001"},
		{"FAILOVER_STRATEGY", "fastest"},
		{"FAILOVER_MAX_WAIT", "-1s"},
		{"FAILOVER_MAX_WAIT", "soon"},
	} {
		t.Run(tc.variable+"="+tc.value, func(t *testing.T) {
			isolateEnv(t)
			t.Setenv("AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com")
			t.Setenv("AZURE_OPENAI_API_KEY_1", secretKey)
			t.Setenv(tc.variable, tc.value)
			client, err := failover.NewFromEnv()
			assert.Nil(t, client)
			require.ErrorIs(t, err, failover.ErrConfig)
			var cfgErr *failover.ConfigError
			require.ErrorAs(t, err, &cfgErr)
			assert.Equal(t, tc.variable, cfgErr.Field)
			assert.Contains(t, err.Error(), "failover: "+tc.variable+": ")
			assert.NotContains(t, err.Error(), secretKey)
		})
	}
}

func TestBadRoutingSettingsInGo(t *testing.T) {
	good := failover.Region{Name: "eastus", Endpoint: "https://eastus.openai.azure.com", APIKey: secretKey}
	for _, tc := range []struct {
		name  string
		edit  func(*failover.Region)
		field string
	}{
		{"negative priority", func(r *failover.Region) { r.Priority = -1 }, "regions[0].Priority"},
		{"negative weight", func(r *failover.Region) { r.Weight = -1 }, "regions[0].Weight"},
		{"weight too large", func(r *failover.Region) { r.Weight = 1_000_001 }, "regions[0].Weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.edit(&r)
			client, err := failover.New([]failover.Region{r})
			assert.Nil(t, client)
			require.ErrorIs(t, err, failover.ErrConfig)
			var cfgErr *failover.ConfigError
			require.ErrorAs(t, err, &cfgErr)
			assert.Equal(t, tc.field, cfgErr.Field)
		})
	}
	t.Run("unknown strategy", func(t *testing.T) {
		client, err := failover.New([]failover.Region{good}, failover.WithStrategy(failover.Strategy(42)))
		assert.Nil(t, client)
		var cfgErr *failover.ConfigError
		require.ErrorAs(t, err, &cfgErr)
		assert.Equal(t, "WithStrategy", cfgErr.Field)
	})
	t.Run("negative max wait", func(t *testing.T) {
		client, err := failover.New([]failover.Region{good}, failover.WithMaxWait(-time.Second))
		assert.Nil(t, client)
		var cfgErr *failover.ConfigError
		require.ErrorAs(t, err, &cfgErr)
		assert.Equal(t, "WithMaxWait", cfgErr.Field)
	})
}

func TestMissingModelIsLearnedFromA404(t *testing.T) {
	eastus := failovertest.NewRegion("eastus", failovertest.WithDeployments("text-embedding-3-small"))
	t.Cleanup(eastus.Close)
	westus := startRegions(t, []string{"westus"})[0]
	client := newClient(t, regionsOf(eastus, westus))

	var rec recorder
	_, err := client.ChatCompletion(rec.context(t.Context()), hello())
	require.NoError(t, err)
	require.Equal(t, []string{"eastus", "westus"}, rec.regions())
	first := rec.first()
	assert.Equal(t, http.StatusNotFound, first.Status)
	assert.Equal(t, failover.OutcomeFailedOver, first.Outcome)
	assert.Equal(t, failover.DefaultMissingModelRest, first.Rest)

	for range 5 {
		assert.Equal(t, []string{"westus"}, routeChat(t, client), "gpt-4o no longer goes to eastus")
	}
	assert.Equal(t, 1, eastus.Requests())

	var embRec recorder
	resp := routeEmbeddings(t, client, &embRec)
	assert.Len(t, resp.Data, 1)
	assert.Equal(t, []string{"eastus"}, embRec.regions(), "other models still go to eastus first")
	calls := eastus.Calls()
	require.Len(t, calls, 2)
	assert.Equal(t, "embeddings", calls[1].Operation)
	assert.Equal(t, "text-embedding-3-small", calls[1].Deployment)
	assert.Equal(t, http.StatusOK, calls[1].Status)

	h := routingHealth(t, client, "eastus")
	assert.Equal(t, failover.StateServing, h.State, "the region as a whole serves")
	require.Len(t, h.Models, 1)
	assert.Equal(t, "gpt-4o", h.Models[0].Model)
	assert.Equal(t, failover.StateMissing, h.Models[0].State)
	assert.Contains(t, h.Models[0].Reason, "404")
	assert.WithinDuration(t, time.Now().Add(failover.DefaultMissingModelRest), h.Models[0].Until, time.Minute)
	assert.Empty(t, routingHealth(t, client, "westus").Models)
}

// TestRetryAtIsZeroWhenEveryRegionLacksTheModel: ExhaustedError.RetryAt is documented as zero when every
// candidate lacks the model, whether that was learned from a 404 just now or earlier.
func TestRetryAtIsZeroWhenEveryRegionLacksTheModel(t *testing.T) {
	eastus := failovertest.NewRegion("eastus", failovertest.WithDeployments("text-embedding-3-small"))
	t.Cleanup(eastus.Close)
	client := newClient(t, regionsOf(eastus), failover.WithMaxWait(0))

	var exhausted *failover.ExhaustedError
	_, err := client.ChatCompletion(t.Context(), hello())
	require.ErrorAs(t, err, &exhausted)
	require.Len(t, exhausted.Attempts, 1)
	assert.True(t, exhausted.RetryAt.IsZero(), "first request: RetryAt %v", exhausted.RetryAt)

	_, err = client.ChatCompletion(t.Context(), hello())
	require.ErrorAs(t, err, &exhausted)
	assert.Empty(t, exhausted.Attempts)
	require.Len(t, exhausted.Skipped, 1)
	assert.Equal(t, failover.StateMissing, exhausted.Skipped[0].State)
	assert.True(t, exhausted.RetryAt.IsZero(), "later request: RetryAt %v", exhausted.RetryAt)
}

// TestNoWaitForARegionThatLacksTheModel: a region that rests as a whole (no answer) and lacks the model (404)
// cannot serve the model when its rest ends, so a request for that model must not wait for it.
func TestNoWaitForARegionThatLacksTheModel(t *testing.T) {
	eastus := failovertest.NewRegion("eastus", failovertest.WithDeployments("text-embedding-3-small"))
	t.Cleanup(eastus.Close)
	client := newClient(t, regionsOf(eastus), failover.WithBackoff(func(int) time.Duration { return 2 * time.Second }))

	_, err := client.ChatCompletion(t.Context(), hello()) // 404: gpt-4o is missing here
	require.ErrorIs(t, err, failover.ErrExhausted)
	eastus.Script(failovertest.Disconnect()) // then the region stops answering: it rests 2s as a whole
	short, cancelShort := context.WithTimeout(t.Context(), time.Second)
	defer cancelShort()
	var rec recorder
	_, err = client.CreateEmbeddings(rec.context(short), openai.EmbeddingRequest{Model: "text-embedding-3-small", Input: []string{"hi"}})
	require.ErrorIs(t, err, failover.ErrExhausted)
	require.Equal(t, 2*time.Second, rec.first().Rest)
	require.Equal(t, failover.StateResting, routingHealth(t, client, "eastus").State)

	// If the request waits, the wait is cut short by canceling it, so the test never sleeps.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var waited time.Duration
	ctx = failover.WithTrace(ctx, &failover.Trace{Wait: func(d time.Duration) { waited = d; cancel() }})
	_, err = client.ChatCompletion(ctx, hello())
	assert.Zero(t, waited, "no wait for a region that lacks the model, whatever its own rest")
	require.ErrorIs(t, err, failover.ErrExhausted)
	var exhausted *failover.ExhaustedError
	require.ErrorAs(t, err, &exhausted)
	assert.Zero(t, exhausted.RetryAt)
	assert.Equal(t, 2, eastus.Requests())
}

func TestDeclaredDeploymentsRouteByModel(t *testing.T) {
	servers := startRegions(t, []string{"chat-region", "embed-region"})
	regions := regionsOf(servers...)
	regions[0].Deployments = map[string]string{"gpt-4o": "chat"}
	regions[1].Deployments = map[string]string{"text-embedding-3-small": "embed"}
	client := newClient(t, regions)

	for range 20 {
		var rec recorder
		routeEmbeddings(t, client, &rec)
		assert.Equal(t, []string{"embed-region"}, rec.regions())
	}
	assert.Empty(t, servers[0].Calls(), "a region without the model never receives it")
	calls := servers[1].Calls()
	require.Len(t, calls, 20)
	for _, c := range calls {
		assert.Equal(t, "embeddings", c.Operation)
		assert.Equal(t, "embed", c.Deployment)
		assert.Equal(t, "text-embedding-3-small", c.Model)
	}

	for range 3 {
		assert.Equal(t, []string{"chat-region"}, routeChat(t, client))
	}
	assert.Len(t, servers[1].Calls(), 20, "chat never goes to the embeddings region")
	for _, c := range servers[0].Calls() {
		assert.Equal(t, "chat", c.Deployment)
		assert.Equal(t, "chat/completions", c.Operation)
	}

	_, err := client.CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Model: "gpt-35-turbo", Messages: hello()})
	require.ErrorIs(t, err, failover.ErrExhausted)
	var exhausted *failover.ExhaustedError
	require.ErrorAs(t, err, &exhausted)
	assert.Equal(t, "gpt-35-turbo", exhausted.Model)
	assert.Empty(t, exhausted.Attempts)
	assert.True(t, exhausted.RetryAt.IsZero())
	require.Len(t, exhausted.Skipped, 2)
	for i, name := range []string{"chat-region", "embed-region"} {
		assert.Equal(t, name, exhausted.Skipped[i].Region)
		assert.Equal(t, failover.StateMissing, exhausted.Skipped[i].State)
	}
	assert.Len(t, servers[0].Calls(), 3)
	assert.Len(t, servers[1].Calls(), 20)
}

// logRecord is the part of a JSON log line the tests read.
type logRecord struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	Region string `json:"region"`
	Status int    `json:"status"`
	Rest   int64  `json:"rest"`
}

func readLog(t *testing.T, buf *bytes.Buffer) []logRecord {
	t.Helper()
	var records []logRecord
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		var r logRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
		records = append(records, r)
	}
	require.NoError(t, sc.Err())
	return records
}

func TestUnauthorizedRestsTheWholeRegionAndIsLoggedOnce(t *testing.T) {
	const key = "eastus-S3cret-0123456789abcdef"
	const concurrent = 4
	for _, tc := range []struct {
		name string
		opts []failover.Option
		rest time.Duration
	}{
		{"default rest", nil, failover.DefaultFaultRest},
		{"WithFaultRest", []failover.Option{failover.WithFaultRest(2 * time.Minute)}, 2 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first requests meet at eastus, so that several 401s settle at once.
			var arrived atomic.Int32
			release := make(chan struct{})
			eastus := failovertest.NewRegion("eastus", failovertest.WithKey(key),
				failovertest.WithOnRequest(func(failovertest.Call) {
					if arrived.Add(1) == concurrent {
						close(release)
					}
					select {
					case <-release:
					case <-time.After(10 * time.Second):
					}
				}))
			t.Cleanup(eastus.Close)
			// A misbehaving proxy echoes the key: it must not reach the log either.
			eastus.SetDefault(failovertest.Reply{Status: http.StatusUnauthorized,
				Body: `{"error":{"code":"401","message":"Access denied for key ` + key + `"}}`})
			westus := startRegions(t, []string{"westus"})[0]
			regions := regionsOf(eastus, westus)
			require.Equal(t, key, regions[0].APIKey)

			var logBuf lockedBuffer
			logger := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			client := newClient(t, regions, append(tc.opts, failover.WithLogger(logger))...)

			recs := make([]recorder, concurrent)
			var wg sync.WaitGroup
			for i := range concurrent {
				wg.Go(func() {
					_, err := client.ChatCompletion(recs[i].context(t.Context()), hello())
					assert.NoError(t, err)
				})
			}
			wg.Wait()
			require.EqualValues(t, concurrent, arrived.Load(), "every concurrent request reached eastus")
			for i := range recs {
				assert.Equal(t, []string{"eastus", "westus"}, recs[i].regions())
				first := recs[i].first()
				assert.Equal(t, http.StatusUnauthorized, first.Status)
				// Concurrent failures each set the rest from their own now: the latest stands, a few ns later.
				assert.InDelta(t, tc.rest, first.Rest, float64(time.Millisecond))
				assert.NotContains(t, first.String(), key)
			}

			for range 3 {
				assert.Equal(t, []string{"westus"}, routeChat(t, client))
			}
			var rec recorder
			routeEmbeddings(t, client, &rec)
			assert.Equal(t, []string{"westus"}, rec.regions(), "the rest covers every model")
			assert.EqualValues(t, concurrent, eastus.Requests())

			h := routingHealth(t, client, "eastus")
			assert.Equal(t, failover.StateResting, h.State)
			assert.Equal(t, "401: credentials rejected", h.Reason)
			assert.WithinDuration(t, time.Now().Add(tc.rest), h.Until, 30*time.Second)

			log := logBuf.bytes()
			assert.NotContains(t, log.String(), key)
			assert.NotContains(t, log.String(), key[:16])
			var errorsLogged, warnings int
			for _, r := range readLog(t, log) {
				switch r.Level {
				case "ERROR":
					errorsLogged++
					assert.Equal(t, "eastus", r.Region)
					assert.Equal(t, http.StatusUnauthorized, r.Status)
					assert.Equal(t, tc.rest.Nanoseconds(), r.Rest)
				case "WARN":
					warnings++
				}
			}
			assert.Equal(t, 1, errorsLogged, "a fault is logged at Error once per episode:\n%s", log)
			assert.Equal(t, concurrent, warnings, "every failed attempt is logged at Warn")
		})
	}
}

func TestInsufficientQuotaFromTheFallbackRests(t *testing.T) {
	eastus := startRegions(t, []string{"eastus"})[0]
	eastus.SetDefault(failovertest.RateLimited(time.Minute))
	oai := failovertest.NewOpenAI()
	t.Cleanup(oai.Close)
	oai.SetDefault(failovertest.InsufficientQuota())
	client := newClient(t, regionsOf(eastus), failover.WithOpenAIFallback(oai.Key, oai.URL), failover.WithMaxWait(0))

	_, err := client.ChatCompletion(t.Context(), hello())
	require.ErrorIs(t, err, failover.ErrExhausted)
	var exhausted *failover.ExhaustedError
	require.ErrorAs(t, err, &exhausted)
	require.Len(t, exhausted.Attempts, 2)
	assert.Equal(t, failover.OpenAIFallbackName, exhausted.Attempts[1].Region)
	assert.Equal(t, failover.DefaultFaultRest, exhausted.Attempts[1].Rest)
	assert.Contains(t, err.Error(), "insufficient_quota")
	assert.Contains(t, err.Error(), "waiting will not help")
	assert.Equal(t, 1, oai.Requests())

	_, err = client.ChatCompletion(t.Context(), hello())
	require.ErrorIs(t, err, failover.ErrExhausted)
	require.ErrorAs(t, err, &exhausted)
	assert.Empty(t, exhausted.Attempts, "both rest: nothing is sent")
	assert.Equal(t, 1, oai.Requests(), "the fallback is not asked again")
	assert.Equal(t, 1, eastus.Requests())
	var skipped []string
	for _, s := range exhausted.Skipped {
		skipped = append(skipped, s.Region)
		assert.Equal(t, failover.StateResting, s.State)
	}
	assert.Equal(t, []string{"eastus", failover.OpenAIFallbackName}, skipped)
	assert.Contains(t, err.Error(), "insufficient_quota")
	h := routingHealth(t, client, failover.OpenAIFallbackName)
	assert.Equal(t, failover.StateResting, h.State, "the whole fallback rests")
	assert.Contains(t, h.Reason, "insufficient_quota")
}

func TestCustomBackoffSizesRestsWithoutRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var asked []int
	backoff := func(failures int) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, failures)
		return time.Duration(failures) * 7 * time.Second
	}
	servers := startRegions(t, []string{"eastus", "westus", "centralus", "swedencentral"})
	servers[0].Script(failovertest.InternalError())               // no Retry-After: the backoff
	servers[1].Script(failovertest.RateLimited(30 * time.Second)) // retry-after: 30
	servers[2].Script(failovertest.RateLimited(0))                // a 429 without retry headers: the backoff
	client := newClient(t, regionsOf(servers...), failover.WithBackoff(backoff))
	require.Empty(t, failovertest.InternalError().Header.Get("Retry-After"))

	var rec recorder
	_, err := client.ChatCompletion(rec.context(t.Context()), hello())
	require.NoError(t, err)
	require.Equal(t, []string{"eastus", "westus", "centralus", "swedencentral"}, rec.regions())
	rec.mu.Lock()
	attempts := append([]failover.Attempt(nil), rec.attempts...)
	rec.mu.Unlock()
	assert.Equal(t, 500, attempts[0].Status)
	assert.Equal(t, 7*time.Second, attempts[0].Rest, "the backoff's value")
	assert.Equal(t, 429, attempts[1].Status)
	assert.Equal(t, "30", attempts[1].Header.Get("Retry-After"))
	assert.Equal(t, 30*time.Second, attempts[1].Rest, "the server's retry-after, not the backoff")
	assert.Equal(t, 7*time.Second, attempts[2].Rest)
	assert.Zero(t, attempts[3].Rest)
	mu.Lock()
	assert.Equal(t, []int{1, 1}, asked, "asked once per failure without Retry-After, each the first of its region")
	mu.Unlock()

	var health []failover.ModelHealth
	for _, h := range client.Health()[:3] {
		require.Len(t, h.Models, 1, h.Region)
		health = append(health, h.Models[0])
	}
	assert.Equal(t, failover.StateResting, health[0].State)
	assert.WithinDuration(t, time.Now().Add(7*time.Second), health[0].Until, 5*time.Second)
	assert.WithinDuration(t, time.Now().Add(30*time.Second), health[1].Until, 5*time.Second)
}
