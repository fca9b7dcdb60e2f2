package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const chatAnswer = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`

// heldRegion is a region whose answers to bodies containing "hold" wait until release is closed; arrived gets one
// value per held request that reached it.
type heldRegion struct {
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func newHeldRegion() *heldRegion {
	return &heldRegion{arrived: make(chan struct{}, 16), release: make(chan struct{})}
}

func (h *heldRegion) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if strings.Contains(string(body), "hold") {
		h.arrived <- struct{}{}
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, chatAnswer)
}

func (h *heldRegion) releaseAll() { h.once.Do(func() { close(h.release) }) }

// gatewayBefore serves handler as a region behind a client and a gateway configured by cfg (which admits
// gatewayKey), and returns the gateway's URL.
func gatewayBefore(t *testing.T, cfg gateway.Config, handler http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(gatewayFor(t, cfg, handler))
	t.Cleanup(srv.Close)
	return srv.URL
}

// gatewayFor is a gateway configured by cfg (which admits gatewayKey) in front of a client whose one region,
// eastus, handler serves on loopback.
func gatewayFor(t *testing.T, cfg gateway.Config, handler http.Handler) *gateway.Gateway {
	t.Helper()
	region := httptest.NewServer(handler)
	t.Cleanup(region.Close)
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: region.URL, APIKey: "region-key-1"}},
		failover.WithMaxWait(0))
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	cfg.Keys = []string{gatewayKey}
	gw, err := gateway.New(client, cfg)
	require.NoError(t, err)
	return gw
}

// chatBody is a chat request whose body is about size bytes, with word in it.
func chatBody(word string, size int) string {
	return `{"model":"gpt-4o","messages":[{"role":"user","content":"` + word + strings.Repeat(" x", max(0, size-60)/2) + `"}]}`
}

// assertShed checks a gateway_overloaded answer: 503 at once with Retry-After, in the error shape.
func assertShed(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Equal(t, "true", resp.Header.Get("X-Should-Retry"), "nothing went upstream: the caller's SDK may retry")
	var e struct {
		Error struct{ Message, Type, Code string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &e), body)
	assert.Equal(t, "gateway_overloaded", e.Error.Code)
	assert.Equal(t, "server_error", e.Error.Type)
}

// metricValue reads one sample of the gateway's /metrics, such as `aoai_gateway_shed_total{reason="in_flight"}`.
func metricValue(t *testing.T, url, sample string) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	_, text := do(t, req)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(text)
	require.NotNil(t, m, "no %s in /metrics", sample)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// A request over MaxInFlight gets 503 with Retry-After at once, while the requests in flight are held upstream;
// they are served when the region answers, and the gateway serves again after.
func TestInFlightLimitShedsAtOnce(t *testing.T) {
	region := newHeldRegion()
	defer region.releaseAll()
	url := gatewayBefore(t, gateway.Config{MaxInFlight: 2}, region)

	var wg sync.WaitGroup
	statuses := make(chan int, 2)
	for range 2 {
		wg.Go(func() {
			resp, body := post(t, url, "/v1/chat/completions", chatBody("hold", 100), map[string]string{"api-key": gatewayKey})
			assert.Equal(t, http.StatusOK, resp.StatusCode, body)
			statuses <- resp.StatusCode
		})
	}
	<-region.arrived
	<-region.arrived // both are in flight, held by the region
	resp, body := post(t, url, "/v1/chat/completions", chatBody("now", 100), map[string]string{"api-key": gatewayKey})
	assertShed(t, resp, body)
	assert.Contains(t, body, "2 requests in flight")
	assert.Equal(t, 1.0, metricValue(t, url, `aoai_gateway_shed_total{reason="in_flight"}`))
	assert.Equal(t, 2.0, metricValue(t, url, "aoai_gateway_in_flight_requests"), "/metrics is not counted, nor shed")
	assert.Equal(t, 1.0, metricValue(t, url, `aoai_gateway_requests_total{api="openai",operation="chat/completions",status="503"}`),
		"a shed request is counted with the requests, as one shed for bytes is")

	region.releaseAll()
	wg.Wait()
	assert.Len(t, statuses, 2)
	resp, body = post(t, url, "/v1/chat/completions", chatBody("after", 100), map[string]string{"api-key": gatewayKey})
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
}

// A body that would take the bytes held past MaxHeldBytes gets 503 before it is read, whether its length is
// declared or not (chunked); a body that fits is served; the bytes are given back when requests end.
func TestHeldBytesBudgetShedsBodies(t *testing.T) {
	const limit = 64 << 10
	region := newHeldRegion()
	defer region.releaseAll()
	url := gatewayBefore(t, gateway.Config{MaxBodyBytes: limit, MaxUploadBytes: limit, MaxHeldBytes: 100 << 10}, region)

	held := make(chan int, 1)
	go func() {
		resp, body := post(t, url, "/v1/chat/completions", chatBody("hold", 60<<10), map[string]string{"api-key": gatewayKey})
		assert.Equal(t, http.StatusOK, resp.StatusCode, body)
		held <- resp.StatusCode
	}()
	<-region.arrived // 60 KiB held of 100
	assert.InDelta(t, 60<<10, metricValue(t, url, "aoai_gateway_held_bytes"), 100)

	resp, body := post(t, url, "/v1/chat/completions", chatBody("big", 60<<10), map[string]string{"api-key": gatewayKey})
	assertShed(t, resp, body)
	assert.Contains(t, body, "bytes of request bodies and answers")

	t.Run("chunked", func(t *testing.T) {
		// No Content-Length: the buffer is reserved as it grows (32 KiB, then 64), and the growth past the
		// budget sheds the request.
		resp, body := postChunked(t, url, chatBody("big", 60<<10))
		assertShed(t, resp, body)
		assert.True(t, resp.Close, "the rest of a shed chunked body is not read: the connection closes")
		resp, body = postChunked(t, url, chatBody("small", 10<<10))
		assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	})
	resp, body = post(t, url, "/v1/chat/completions", chatBody("small", 10<<10), map[string]string{"api-key": gatewayKey})
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a body that fits is served: %s", body)
	assert.Equal(t, 2.0, metricValue(t, url, `aoai_gateway_shed_total{reason="held_bytes"}`))

	region.releaseAll()
	<-held
	assert.Equal(t, 0.0, metricValue(t, url, "aoai_gateway_held_bytes"), "every byte is given back")
}

// postChunked posts body without a Content-Length: chunked, as a caller streaming its body sends it.
func postChunked(t *testing.T, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url+"/v1/chat/completions",
		io.MultiReader(strings.NewReader(body))) // a reader of unknown length
	require.NoError(t, err)
	require.Nil(t, req.GetBody, "a body net/http sends chunked")
	req.Header.Set("api-key", gatewayKey)
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

// TestBufferedAnswerIsHeldUntilWritten: an answer is counted from when the client starts to read it until the
// gateway has written it: while one 16 MiB answer waits for a slow caller, a second does not fit in a 24 MiB
// budget and is shed; once the first is written, its bytes are given back.
func TestBufferedAnswerIsHeldUntilWritten(t *testing.T) {
	const limit = 64 << 10
	// 16 MiB: more than loopback sockets buffer, so that the gateway is still writing it.
	answer := `{"id":"x","object":"embedding","data":"` + strings.Repeat("x", 16<<20) + `"}`
	url := gatewayBefore(t, gateway.Config{MaxBodyBytes: limit, MaxUploadBytes: limit, MaxHeldBytes: 24 << 20},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
			_, _ = io.WriteString(w, answer)
		}))
	req, err := http.NewRequest(http.MethodPost, url+"/v1/embeddings", strings.NewReader(`{"model":"gpt-4o","input":"a"}`))
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	big, err := http.DefaultClient.Do(req) // its headers came: the answer is held, and not read
	require.NoError(t, err)
	defer big.Body.Close()
	require.Equal(t, http.StatusOK, big.StatusCode)
	assert.GreaterOrEqual(t, metricValue(t, url, "aoai_gateway_held_bytes"), float64(len(answer)))

	resp, body := post(t, url, "/v1/embeddings", `{"model":"gpt-4o","input":"b"}`, map[string]string{"api-key": gatewayKey})
	assertShed(t, resp, body)

	n, err := io.Copy(io.Discard, big.Body)
	require.NoError(t, err)
	assert.EqualValues(t, len(answer), n)
	big.Body.Close()
	// The handler gives the bytes back when it returns, just after its last write: the caller may see the end of
	// the answer first. A bounded wait, by scrapes.
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, url, "aoai_gateway_held_bytes") != 0 {
		require.True(t, time.Now().Before(deadline), "the answer's bytes were never given back")
	}
	resp, body = post(t, url, "/v1/embeddings", `{"model":"gpt-4o","input":"c"}`, map[string]string{"api-key": gatewayKey})
	require.Equal(t, http.StatusOK, resp.StatusCode, body[:min(len(body), 200)])
}

// TestAnswerOverTheBudgetIsShedBeforeItIsRead: an answer larger than the whole budget is refused as the client
// starts to read it (the region declared its length), not held first: 502 answer_too_large with x-should-retry:
// false (it would never fit, and a retry would be billed again), nothing held afterwards, and the region, which
// did nothing wrong, serves the next request. An answer without a length is counted as its buffer grows, and
// refused at the growth that does not fit.
func TestAnswerOverTheBudgetIsShedBeforeItIsRead(t *testing.T) {
	const limit = 64 << 10
	huge := `{"id":"x","object":"embedding","data":"` + strings.Repeat("x", 4<<20) + `"}`
	url := gatewayBefore(t, gateway.Config{MaxBodyBytes: limit, MaxUploadBytes: limit, MaxHeldBytes: 1 << 20},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			switch {
			case strings.Contains(string(in), "small"):
				_, _ = io.WriteString(w, `{"id":"x","object":"embedding","data":[]}`)
			case strings.Contains(string(in), "chunked"):
				for i := 0; i < len(huge); i += 64 << 10 { // no Content-Length: sent in pieces
					_, _ = io.WriteString(w, huge[i:min(i+64<<10, len(huge))])
					w.(http.Flusher).Flush()
				}
			default:
				w.Header().Set("Content-Length", strconv.Itoa(len(huge)))
				_, _ = io.WriteString(w, huge)
			}
		}))
	for _, input := range []string{"declared", "chunked"} {
		resp, body := post(t, url, "/v1/embeddings", `{"model":"gpt-4o","input":"`+input+`"}`, map[string]string{"api-key": gatewayKey})
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode, input)
		assert.Contains(t, body, "answer_too_large", input)
		assert.Equal(t, "false", resp.Header.Get("X-Should-Retry"), input)
		assert.Zero(t, metricValue(t, url, "aoai_gateway_held_bytes"), "nothing held after the shed answer")
	}
	assert.Equal(t, float64(2), metricValue(t, url, `aoai_gateway_shed_total{reason="held_bytes"}`))
	resp, body := post(t, url, "/v1/embeddings", `{"model":"gpt-4o","input":"small"}`, map[string]string{"api-key": gatewayKey})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
}

// MaxHeldBytes's default is half of GOMEMLIMIT when that is smaller than twice DefaultMaxHeldBytes; one that
// would not fit a body the body limits accept is refused, naming the field.
func TestHeldBytesDefaultFollowsGOMEMLIMIT(t *testing.T) {
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: "https://eastus.invalid", APIKey: "k"}})
	require.NoError(t, err)
	defer client.CloseIdleConnections()
	previous := debug.SetMemoryLimit(200 << 20)
	defer debug.SetMemoryLimit(previous)
	gw, err := gateway.New(client, gateway.Config{Keys: []string{gatewayKey}})
	require.NoError(t, err)
	srv := httptest.NewServer(gw)
	defer srv.Close()
	assert.Equal(t, float64(100<<20), metricValue(t, srv.URL, "aoai_gateway_held_bytes_limit"))
	assert.Equal(t, float64(gateway.DefaultMaxInFlight), metricValue(t, srv.URL, "aoai_gateway_in_flight_limit"))

	_, err = gateway.New(client, gateway.Config{Keys: []string{gatewayKey}, MaxHeldBytes: 1 << 20})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MaxHeldBytes")
	_, err = gateway.New(client, gateway.Config{Keys: []string{gatewayKey}, MaxInFlight: -1})
	assert.ErrorContains(t, err, "MaxInFlight")
}

// /metrics serves the Go runtime's own metrics and the process's resident memory, for operators watching the
// gateway's memory against its limits.
func TestMetricsServeRuntime(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	for _, sample := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes",
		"go_memstats_sys_bytes", "process_resident_memory_bytes"} {
		assert.Positive(t, metricValue(t, f.url, sample), sample)
	}
	assert.GreaterOrEqual(t, metricValue(t, f.url, "go_gc_cycles_total"), 0.0)
}
