package failover_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	"github.com/aoai-failover/failover/internal/redistest"
	"github.com/aoai-failover/failover/redisstore"
)

// TestChaosSoak runs thousands of concurrent requests (chat, streaming, embeddings, async and batch) through two
// client replicas that share their rests through Redis, and through an aoai-gateway with a third, while four
// regions fail at random (a fixed seed) and go fully down and come back, and a fifth, "steady", serves except for
// one outage. It checks every request: a valid answer, or an error that says why (ErrExhausted with every backend
// accounted for, or a stream cut after content); success whenever steady was up for the whole request (and long
// enough before it for a rest from its outage to end); no more attempts than backends (no waits: one pass); and,
// at the end, no goroutine left and memory back near where it started.
//
// FAILOVER_SOAK_DURATION (a Go duration, default 60s; 5s with -short) and FAILOVER_SOAK_SEED change the run; the
// numbers are logged (go test -v -run ChaosSoak) and recorded in BENCHMARKS.md.
func TestChaosSoak(t *testing.T) {
	duration, seed := soakSettings(t)
	redisURL := redistest.URL(t)
	s := newSoak(t, duration, seed, redisURL)

	// Warm up: connections, pools, Lua scripts, then the baseline.
	s.run(t, 200*time.Millisecond, false)
	s.reset()
	baseline := heapInUse()

	start := time.Now()
	s.run(t, duration, true)
	elapsed := time.Since(start)

	s.closeIdle()
	after := heapInUse()
	s.report(t, elapsed, baseline, after)

	for _, p := range s.problems() {
		t.Error(p)
	}
	// The clients keep only bounded state (rests per region and model); what thousands of requests allocated is
	// garbage now. 32 MiB is far below what one kept request per attempt would hold.
	if grown := int64(after) - int64(baseline); grown > 32<<20 {
		t.Errorf("heap in use grew by %d MiB over the run (baseline %d MiB, after %d MiB)", grown>>20, baseline>>20, after>>20)
	}
}

func soakSettings(t *testing.T) (time.Duration, uint64) {
	duration := 60 * time.Second
	if testing.Short() {
		duration = 5 * time.Second
	}
	if raw := os.Getenv("FAILOVER_SOAK_DURATION"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 {
			t.Fatalf("FAILOVER_SOAK_DURATION=%q: expected a positive Go duration such as 2m", raw)
		}
		duration = d
	}
	seed := uint64(20261123)
	if raw := os.Getenv("FAILOVER_SOAK_SEED"); raw != "" {
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			t.Fatalf("FAILOVER_SOAK_SEED=%q: expected a whole number", raw)
		}
		seed = n
	}
	return duration, seed
}

const (
	soakAttemptTimeout = 5 * time.Second
	soakMaxRest        = 500 * time.Millisecond // the backoff's ceiling, so that steady's rests end soon after it is back
	// soakGrace is how long before a request steady must have been up for the request to count on it: a rest
	// from its outage (soakMaxRest), a load of the store (1 s), a probe, and the timers' slack.
	soakGrace = soakMaxRest + time.Second + soakAttemptTimeout + 500*time.Millisecond
)

var soakModels = []string{"gpt-4o", "gpt-4o-mini"}

// soak is the fleet under test and what it saw.
type soak struct {
	regions  []*failovertest.Server // four faulty, then steady
	chaos    []*chaos
	replicas []*failover.Client // the two library replicas; the gateway's client is the third
	gwClient *failover.Client
	gwAPI    *openai.Client
	backends int

	mu       sync.Mutex
	counts   map[string]int // outcomes by path and kind
	attempts map[string]int // attempts by outcome and status
	perReq   []int          // attempts per traced request
	rests    int
	bad      []string
}

func newSoak(t *testing.T, duration time.Duration, seed uint64, redisURL string) *soak {
	s := &soak{}
	names := []string{"eastus", "westus", "northeurope", "swedencentral"}
	epoch := time.Now()
	for i, name := range names {
		srv := failovertest.NewRegion(name, failovertest.WithoutCallLog())
		t.Cleanup(srv.Close)
		c := newChaos(seed+uint64(i), epoch, duration, 0.15)
		srv.SetReplier(c.reply)
		s.regions, s.chaos = append(s.regions, srv), append(s.chaos, c)
	}
	steady := failovertest.NewRegion("steady", failovertest.WithoutCallLog())
	t.Cleanup(steady.Close)
	c := &chaos{epoch: epoch, down: [][2]time.Duration{{duration * 55 / 100, duration * 70 / 100}}}
	steady.SetReplier(c.reply)
	s.regions, s.chaos = append(s.regions, steady), append(s.chaos, c)
	s.backends = len(s.regions)

	regions := make([]failover.Region, len(s.regions))
	for i, srv := range s.regions {
		regions[i] = failover.Region{Name: srv.Name, Endpoint: srv.URL, APIKey: srv.Key}
	}
	prefix := "soak-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	newReplica := func() *failover.Client {
		store, err := redisstore.Open(redisURL, prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		client, err := failover.New(regions, failover.WithModel("gpt-4o"), failover.WithMaxWait(0),
			failover.WithAttemptTimeout(soakAttemptTimeout), failover.WithStore(store),
			failover.WithBackoff(func(n int) time.Duration { return min(time.Duration(n)*100*time.Millisecond, soakMaxRest) }),
			failover.WithOnAttempt(s.onAttempt))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(client.CloseIdleConnections)
		return client
	}
	s.replicas = []*failover.Client{newReplica(), newReplica()}
	s.gwClient = newReplica()
	gw, err := gateway.New(s.gwClient, gateway.Config{Keys: []string{"soak-gateway-key"}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	t.Cleanup(front.Close)
	cfg := openai.DefaultConfig("soak-gateway-key")
	cfg.BaseURL = front.URL + "/v1"
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(transport.CloseIdleConnections)
	cfg.HTTPClient = &http.Client{Transport: captureTransport{transport}}
	s.gwAPI = openai.NewClientWithConfig(cfg)
	s.reset()
	return s
}

// chaos is one region's faults: a random one per request, from a seeded source, and windows when it is down.
type chaos struct {
	mu    sync.Mutex
	rng   *rand.Rand // nil: no faults but the down windows
	epoch time.Time
	down  [][2]time.Duration // from epoch
}

func newChaos(seed uint64, epoch time.Time, duration time.Duration, downShare float64) *chaos {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c := &chaos{rng: rng, epoch: epoch}
	for range 2 { // two outages of downShare/2 each, somewhere in the run
		length := time.Duration(float64(duration) * downShare / 2)
		from := time.Duration(rng.Int64N(int64(duration - length)))
		c.down = append(c.down, [2]time.Duration{from, from + length})
	}
	return c
}

// isDown reports whether the region is down at t.
func (c *chaos) isDown(t time.Time) bool {
	at := t.Sub(c.epoch)
	return slices.ContainsFunc(c.down, func(w [2]time.Duration) bool { return at >= w[0] && at < w[1] })
}

// upThrough reports whether the region was up from from to to.
func (c *chaos) upThrough(from, to time.Time) bool {
	a, b := from.Sub(c.epoch), to.Sub(c.epoch)
	return !slices.ContainsFunc(c.down, func(w [2]time.Duration) bool { return a < w[1] && b >= w[0] })
}

func (c *chaos) reply(call failovertest.Call) failovertest.Reply {
	if c.isDown(time.Now()) {
		return failovertest.Disconnect() // a region down resets every connection
	}
	if c.rng == nil {
		return failovertest.Reply{}
	}
	c.mu.Lock()
	n := c.rng.IntN(1000) // per mille
	c.mu.Unlock()
	switch {
	case n < 450:
		return failovertest.Reply{}
	case n < 520:
		return failovertest.RateLimited(time.Duration(200+n%100*20) * time.Millisecond)
	case n < 550:
		return failovertest.RateLimited(0) // no retry-after: the backoff decides
	case n < 552:
		return failovertest.RateLimited(time.Hour) // far beyond any request's deadline: the model is gone here
	case n < 620:
		return failovertest.InternalError()
	case n < 670:
		return failovertest.Unavailable()
	case n < 700:
		return failovertest.RequestTimeout()
	case n < 740:
		return failovertest.Disconnect()
	case n < 750:
		return failovertest.Hang() // until the attempt timeout
	case n < 800:
		return failovertest.Slow(150*time.Millisecond, failovertest.Reply{}) // a slow first byte
	case n < 840:
		return failovertest.Malformed()
	case n < 870:
		return failovertest.Empty()
	case n < 930 && call.Stream:
		return failovertest.StreamFailure(1) // an error as the first event
	case call.Stream:
		return failovertest.Reply{StreamCutAfter: 2} // cut after content
	}
	return failovertest.Reply{}
}

func (s *soak) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts, s.attempts, s.perReq, s.rests, s.bad = map[string]int{}, map[string]int{}, nil, 0, nil
}

func (s *soak) onAttempt(_ context.Context, a failover.Attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts[fmt.Sprintf("%s %d", a.Outcome, a.Status)]++
	if a.Rest > 0 {
		s.rests++
	}
}

func (s *soak) problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad
}

// problem records what went wrong with one request; the first 20 are kept.
func (s *soak) problem(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) < 20 {
		s.bad = append(s.bad, fmt.Sprintf(format, args...))
	}
	s.counts["problem"]++
}

func (s *soak) count(key string, attempts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[key]++
	if attempts >= 0 {
		s.perReq = append(s.perReq, attempts)
	}
}

// The workers: each sends one request after another.
const soakClientWorkers, soakGatewayWorkers = 32, 8

// run sends requests from every worker for d, then waits for them.
func (s *soak) run(t *testing.T, d time.Duration, check bool) {
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range soakClientWorkers + soakGatewayWorkers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for time.Now().Before(deadline) {
				var failed bool
				if w < soakClientWorkers {
					failed = s.clientRequest(t, s.replicas[w%2], rng, check)
				} else {
					failed = s.gatewayRequest(rng, check)
				}
				if failed {
					// A caller backs off after a failure, as one told "retry at" would, rather than spin on
					// answers that take no time to give.
					pause := time.NewTimer(50 * time.Millisecond)
					<-pause.C
				}
			}
		})
	}
	wg.Wait()
}

func (s *soak) steadyUp(start, end time.Time) bool {
	return s.chaos[len(s.chaos)-1].upThrough(start.Add(-soakGrace), end)
}

// clientRequest sends one request through a library replica and reports whether it failed.
func (s *soak) clientRequest(t *testing.T, client *failover.Client, rng *rand.Rand, check bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var traced recorder
	ctx = traced.context(ctx)
	model := soakModels[rng.IntN(len(soakModels))]
	messages := []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}}
	kind := []string{"chat", "chat", "stream", "stream", "embeddings", "async", "batch"}[rng.IntN(7)]
	start := time.Now()
	var err error
	answered := true
	switch kind {
	case "chat":
		var resp openai.ChatCompletionResponse
		resp, err = client.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: model, Messages: messages})
		answered = err != nil || len(resp.Choices) == 1 && whole(resp.Choices[0].Message.Content)
	case "stream", "embeddings":
		answered, err = callAPI(ctx, doerClient(client), kind, model)
	case "async":
		result := <-client.ChatCompletionAsync(ctx, messages)
		err = result.Err
		answered = err != nil || whole(result.Content)
	case "batch":
		for _, r := range client.ChatCompletionBatch(ctx, [][]openai.ChatCompletionMessage{messages, messages, messages}, 3) {
			if r.Err != nil && (err == nil || s.explained(err) == "" && s.explained(r.Err) != "") {
				err = r.Err // the first failure, or one that explains itself worse
			} else if r.Err == nil && !whole(r.Content) {
				answered = false
			}
		}
	}
	end := time.Now()
	attempts := traced.list()
	if !check {
		return err != nil
	}
	limit := s.backends
	if kind == "batch" {
		limit *= 3 // three requests share the trace
	}
	s.count("client "+kind+" "+outcomeOf(err), len(attempts))
	switch {
	case !answered:
		s.problem("client %s: a success without an answer", kind)
	case len(attempts) > limit:
		s.problem("client %s: %d attempts, more than %d backends in one pass", kind, len(attempts), limit)
	case err == nil:
	case errors.Is(err, failover.ErrStreamCut):
		if served := servedBy(attempts); served == "steady" || served == "" {
			s.problem("client stream cut, served by %q: %v", served, err)
		}
	case errors.Is(err, failover.ErrExhausted):
		switch missing := s.explained(err); {
		case missing != "":
			s.problem("client %s: exhausted, but %s: %v", kind, missing, err)
		case s.steadyUp(start, end) && steadyTooSlow(err.Error()):
			s.count("excused: steady timed out (the machine, not the library)", -1)
		case s.steadyUp(start, end):
			s.problem("client %s: failed although steady was up from %s before to its end: %v", kind, soakGrace, err)
		}
	case exhaustedAnswer(err) != nil: // the doer's answer: its message names every region as the error does
		msg := exhaustedAnswer(err).Message
		switch missing := s.missingFromMessage(msg); {
		case missing != "":
			s.problem("client %s: exhausted answer, but %s is not in it: %v", kind, missing, err)
		case s.steadyUp(start, end) && steadyTooSlow(msg):
			s.count("excused: steady timed out (the machine, not the library)", -1)
		case s.steadyUp(start, end):
			s.problem("client %s: failed although steady was up from %s before to its end: %v", kind, soakGrace, err)
		}
	default:
		s.problem("client %s: an error that is neither exhausted nor a stream cut: %v", kind, err)
	}
	return err != nil
}

// explained says what an exhausted error fails to account for: empty when it is an *ExhaustedError whose
// attempts and skips name every region.
func (s *soak) explained(err error) string {
	var ex *failover.ExhaustedError
	if !errors.As(err, &ex) {
		return "no *ExhaustedError in it"
	}
	for _, srv := range s.regions {
		tried := slices.ContainsFunc(ex.Attempts, func(a failover.Attempt) bool { return a.Region == srv.Name })
		skipped := slices.ContainsFunc(ex.Skipped, func(k failover.Skip) bool { return k.Region == srv.Name })
		if !tried && !skipped {
			return srv.Name + " is neither attempted nor skipped"
		}
	}
	return ""
}

// whole reports whether text is a whole answer of a fake region: "Hello from <region>.".
func whole(text string) bool {
	return strings.HasPrefix(text, "Hello from ") && strings.HasSuffix(text, ".")
}

// steadyTooSlow reports whether an error says steady itself took longer than the attempt timeout (or rests
// for it): on a machine stalled for seconds that is what a client sees, and the soak does not count it against
// the library.
func steadyTooSlow(msg string) bool {
	i := strings.Index(msg, "steady: ")
	return i >= 0 && strings.Contains(msg[i:min(len(msg), i+200)], "timed out")
}

func servedBy(attempts []failover.Attempt) string {
	for _, a := range attempts {
		if a.Outcome == failover.OutcomeServed {
			return a.Region
		}
	}
	return ""
}

func outcomeOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, failover.ErrStreamCut):
		return "stream-cut"
	case errors.Is(err, failover.ErrExhausted):
		return "exhausted"
	case exhaustedAnswer(err) != nil:
		return "exhausted-answer"
	}
	return "other"
}

// gatewayRequest sends one request through the gateway, as a caller in another language would, and reports
// whether it failed.
func (s *soak) gatewayRequest(rng *rand.Rand, check bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	model := soakModels[rng.IntN(len(soakModels))]
	kind := []string{"chat", "stream", "embeddings"}[rng.IntN(3)]
	start := time.Now()
	var captured capturedHeader
	ctx = context.WithValue(ctx, capturedKey{}, &captured)
	answered, err := callAPI(ctx, s.gwAPI, kind, model)
	end := time.Now()
	header := captured.header // the gateway's answer, errors included
	if !check {
		return err != nil
	}
	attempts := -1
	if n, convErr := strconv.Atoi(header.Get("X-Failover-Attempts")); convErr == nil {
		attempts = n
	}
	var apiErr *openai.APIError
	status := 0
	if errors.As(err, &apiErr) {
		status = apiErr.HTTPStatusCode
	}
	outcome := "ok"
	cut := apiErr != nil && fmt.Sprint(apiErr.Code) == "stream_cut" // the gateway's own event for a cut stream
	switch {
	case cut:
		outcome = "stream-cut"
	case err != nil:
		outcome = "error " + strconv.Itoa(status)
	}
	s.count("gateway "+kind+" "+outcome, attempts)
	switch {
	case !answered:
		s.problem("gateway %s: a success without an answer", kind)
	case attempts > s.backends:
		s.problem("gateway %s: %d attempts, more than %d backends in one pass", kind, attempts, s.backends)
	case err == nil:
	case kind == "stream" && cut:
		if region := header.Get("X-Failover-Region"); region == "steady" || region == "" {
			s.problem("gateway stream cut, served by %q: %v", region, err)
		}
	case status == http.StatusTooManyRequests || status == http.StatusBadGateway || status == http.StatusServiceUnavailable:
		// The gateway's answers when no region serves; the message is the ExhaustedError's, which names each
		// region it tried or passed over.
		switch missing := s.missingFromMessage(apiErr.Message); {
		case missing != "":
			s.problem("gateway %s: %d does not mention %s: %v", kind, status, missing, err)
		case attempts < 0:
			s.problem("gateway %s: %d without X-Failover-Attempts", kind, status)
		case s.steadyUp(start, end) && steadyTooSlow(apiErr.Message):
			s.count("excused: steady timed out (the machine, not the library)", -1)
		case s.steadyUp(start, end):
			s.problem("gateway %s: %d although steady was up from %s before to its end: %v", kind, status, soakGrace, err)
		}
	default:
		s.problem("gateway %s: unexpected error (status %d): %v", kind, status, err)
	}
	return err != nil
}

// callAPI sends one chat completion, stream or embeddings request through a go-openai client, and reports
// whether a success was a whole answer (a stream cut short must not pass for one) with the error.
func callAPI(ctx context.Context, api *openai.Client, kind, model string) (bool, error) {
	messages := []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}}
	switch kind {
	case "chat":
		resp, err := api.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: model, Messages: messages})
		return err != nil || len(resp.Choices) == 1 && whole(resp.Choices[0].Message.Content), err
	case "stream":
		stream, err := api.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{Model: model, Messages: messages, Stream: true})
		if err != nil {
			return true, err
		}
		defer stream.Close()
		text, err := failovertest.ReadStream(stream)
		return err != nil || whole(text), err
	}
	resp, err := api.CreateEmbeddings(ctx, openai.EmbeddingRequest{Model: openai.EmbeddingModel("text-embedding-3-small"), Input: []string{"hello"}})
	return err != nil || len(resp.Data) == 1 && len(resp.Data[0].Embedding) > 0, err
}

// capturedHeader holds the header of the gateway's answer to one request, which go-openai does not show for
// errors; captureTransport fills it in from the request's context.
type capturedHeader struct{ header http.Header }

type capturedKey struct{}

type captureTransport struct{ base http.RoundTripper }

func (c captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if into, ok := r.Context().Value(capturedKey{}).(*capturedHeader); ok && resp != nil {
		into.header = resp.Header.Clone() // on the caller's goroutine: http.Client.Do calls RoundTrip there
	}
	return resp, err
}

// missingFromMessage names a region the gateway's error message does not mention, if any.
func (s *soak) missingFromMessage(msg string) string {
	for _, srv := range s.regions {
		if !strings.Contains(msg, srv.Name+":") {
			return srv.Name
		}
	}
	return ""
}

func (s *soak) closeIdle() {
	for _, c := range append(slices.Clone(s.replicas), s.gwClient) {
		c.CloseIdleConnections()
	}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// report logs the run's numbers: go test -v -run ChaosSoak shows them.
func (s *soak) report(t *testing.T, elapsed time.Duration, baseline, after uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for _, n := range s.counts {
		total += n
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chaos soak: %d requests in %s (%.0f/s), %d regions (4 faulty, 1 steady), 3 replicas sharing through Redis (one behind the gateway)\n",
		total, elapsed.Round(time.Second), float64(total)/elapsed.Seconds(), s.backends)
	keys := slices.Sorted(maps.Keys(s.counts))
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-32s %7d\n", k, s.counts[k])
	}
	attempts := 0
	hist := map[int]int{}
	for _, n := range s.perReq {
		attempts += n
		hist[n]++
	}
	fmt.Fprintf(&b, "attempts per request (traced): mean %.2f, histogram %v\n", float64(attempts)/float64(max(len(s.perReq), 1)), hist)
	fmt.Fprintf(&b, "upstream attempts by outcome and status (library replicas and gateway):\n")
	for _, k := range slices.Sorted(maps.Keys(s.attempts)) {
		fmt.Fprintf(&b, "  %-32s %7d\n", k, s.attempts[k])
	}
	fmt.Fprintf(&b, "rests set: %d\n", s.rests)
	for _, srv := range s.regions {
		fmt.Fprintf(&b, "  %-14s received %d requests\n", srv.Name, srv.Requests())
	}
	fmt.Fprintf(&b, "heap in use: %d KiB before, %d KiB after; goroutines now %d\n", baseline>>10, after>>10, runtime.NumGoroutine())
	t.Log(b.String())
	if path := os.Getenv("FAILOVER_SOAK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
