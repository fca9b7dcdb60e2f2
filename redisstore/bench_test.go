package redisstore_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/storetest"
)

// benchClients are clients of one healthy fake region: plain go-openai, and failover clients that share their
// state in process (no Store), through storetest's in-memory Store, and through Redis, loading its records at the
// default Refresh (once a second) or before every request (the worst case: one Redis round trip each).
type benchClients struct {
	direct                                  *openai.Client
	inProcess, memory, redis, redisEveryReq *failover.Client
	req                                     openai.ChatCompletionRequest
}

func newBenchClients(b *testing.B) *benchClients {
	b.Helper()
	url := redisURL(b)
	region := failovertest.NewRegion("bench")
	b.Cleanup(region.Close)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	b.Cleanup(transport.CloseIdleConnections)
	cfg := openai.DefaultAzureConfig(region.Key, region.URL)
	cfg.APIVersion = failover.DefaultAPIVersion
	cfg.AzureModelMapperFunc = func(model string) string { return model }
	cfg.HTTPClient = &http.Client{Transport: transport}

	newClient := func(opts ...failover.Option) *failover.Client {
		c, err := failover.New([]failover.Region{{Endpoint: region.URL, APIKey: region.Key}}, opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.CloseIdleConnections)
		return c
	}
	p := prefix(b)
	return &benchClients{
		direct:    openai.NewClientWithConfig(cfg),
		inProcess: newClient(),
		memory:    newClient(failover.WithStore(new(storetest.Memory))),
		redis:     newClient(failover.WithStore(open(b, url, p))),
		redisEveryReq: newClient(failover.WithStore(open(b, url, p)),
			failover.WithStoreTiming(failover.StoreTiming{Refresh: -1})),
		req: openai.ChatCompletionRequest{Model: "gpt-4o", Messages: []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleSystem, Content: "You are a terse assistant."},
			{Role: openai.ChatMessageRoleUser, Content: "Say hello in five words."},
		}},
	}
}

func (c *benchClients) call(b *testing.B, client interface {
	CreateChatCompletion(context.Context, openai.ChatCompletionRequest) (openai.ChatCompletionResponse, error)
}) {
	if _, err := client.CreateChatCompletion(context.Background(), c.req); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkStore measures one chat completion through a healthy region with each way of keeping state, in the
// same run. The "ratio" sub-benchmarks alternate the in-process client with a Redis one in blocks, so that both
// see the same machine state, and report the Redis client's time over the in-process one's and the time it adds
// per request.
func BenchmarkStore(b *testing.B) {
	c := newBenchClients(b)
	for _, k := range []struct {
		name   string
		client *failover.Client
	}{{"in-process", c.inProcess}, {"memory-store", c.memory}, {"redis", c.redis}, {"redis-load-every-request", c.redisEveryReq}} {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.call(b, k.client)
			}
		})
	}
	b.Run("direct-go-openai", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.call(b, c.direct)
		}
	})
	for _, k := range []struct {
		name   string
		client *failover.Client
	}{{"ratio-redis", c.redis}, {"ratio-redis-load-every-request", c.redisEveryReq}} {
		b.Run(k.name, func(b *testing.B) {
			const block = 50
			var wall [2]time.Duration
			n := [2]int{}
			kind, start := 0, time.Now()
			for i := 0; b.Loop(); i++ {
				if i > 0 && i%block == 0 {
					wall[kind] += time.Since(start)
					kind, start = 1-kind, time.Now()
				}
				n[kind]++
				if kind == 0 {
					c.call(b, c.inProcess)
				} else {
					c.call(b, k.client)
				}
			}
			wall[kind] += time.Since(start)
			if n[0] == 0 || n[1] == 0 {
				return // too few iterations to compare (-benchtime 1x)
			}
			perInProcess := float64(wall[0]) / float64(n[0])
			perRedis := float64(wall[1]) / float64(n[1])
			b.ReportMetric(perRedis/perInProcess, "time-ratio")
			b.ReportMetric(perRedis-perInProcess, "added-ns/op")
			b.ReportMetric(0, "ns/op")
		})
	}
}
