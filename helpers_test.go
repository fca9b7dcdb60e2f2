package failover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startRegions starts one fake region per name, closed when the test ends. Options apply to every region.
func startRegions(t testing.TB, names []string, opts ...failovertest.Option) []*failovertest.Server {
	t.Helper()
	servers := make([]*failovertest.Server, len(names))
	for i, name := range names {
		servers[i] = failovertest.NewRegion(name, opts...)
		t.Cleanup(servers[i].Close)
	}
	return servers
}

// regionsOf configures one Region per fake server, named as the server is.
func regionsOf(servers ...*failovertest.Server) []failover.Region {
	regions := make([]failover.Region, len(servers))
	for i, s := range servers {
		regions[i] = failover.Region{Name: s.Name, Endpoint: s.URL, APIKey: s.Key}
	}
	return regions
}

// newClient builds a client whose idle connections are closed when the test ends.
func newClient(t testing.TB, regions []failover.Region, opts ...failover.Option) *failover.Client {
	t.Helper()
	c, err := failover.New(regions, append([]failover.Option{failover.WithModel("gpt-4o")}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// recorder collects a request's attempts through a Trace.
type recorder struct {
	mu       sync.Mutex
	attempts []failover.Attempt
}

func (r *recorder) context(ctx context.Context) context.Context {
	return failover.WithTrace(ctx, &failover.Trace{AttemptDone: func(a failover.Attempt) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attempts = append(r.attempts, a)
	}})
}

// list returns the attempts so far.
func (r *recorder) list() []failover.Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts)
}

func (r *recorder) regions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, len(r.attempts))
	for i, a := range r.attempts {
		names[i] = a.Region
	}
	return names
}

func (r *recorder) last() failover.Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[len(r.attempts)-1]
}

func (r *recorder) first() failover.Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[0]
}

func hello() []openai.ChatCompletionMessage {
	return []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}}
}

// doerClient is a plain go-openai client that sends through the failover client.
func doerClient(c *failover.Client) *openai.Client {
	cfg := openai.DefaultConfig("")
	cfg.HTTPClient = c
	return openai.NewClientWithConfig(cfg)
}

func chatRequest() openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{Model: "gpt-4o", Messages: hello()}
}

// streamText opens a chat completion stream through client and reads it to its end.
func streamText(ctx context.Context, t *testing.T, client *failover.Client) string {
	t.Helper()
	stream, err := doerClient(client).CreateChatCompletionStream(ctx, chatRequest())
	require.NoError(t, err)
	defer stream.Close()
	text, err := failovertest.ReadStream(stream)
	require.NoError(t, err)
	return text
}

func embeddingRequest() openai.EmbeddingRequest {
	return openai.EmbeddingRequest{Model: "text-embedding-3-small", Input: []string{"hello"}}
}

func jsonOf(v any) (string, error) {
	data, err := json.Marshal(v)
	return string(data), err
}

// --- Shared by the tests of several files ---------------------------------------------------------------

// bubbleFleet starts fake regions on an in-memory network and a client that reaches them.
func bubbleFleet(t *testing.T, names []string, opts ...failover.Option) ([]*failovertest.Server, *failover.Client) {
	t.Helper()
	network := failovertest.NewNetwork()
	t.Cleanup(network.Close)
	servers := startRegions(t, names, failovertest.OnNetwork(network))
	client := newClient(t, regionsOf(servers...), append([]failover.Option{failover.WithHTTPClient(network.Client())}, opts...)...)
	return servers, client
}

// summary is an attempt's region, outcome and hedge mark, for comparing traces.
type summary struct {
	Region  string
	Outcome failover.Outcome
	Hedged  bool
}

// summarize is the summary of each attempt.
func summarize(attempts []failover.Attempt) []summary {
	out := make([]summary, len(attempts))
	for i, a := range attempts {
		out[i] = summary{a.Region, a.Outcome, a.Hedged}
	}
	return out
}

// steerSend sends req through client and returns the regions its attempts went to, with their outcomes.
func steerSend(t *testing.T, client *failover.Client, req openai.ChatCompletionRequest) []failover.Attempt {
	t.Helper()
	var rec recorder
	_, err := client.CreateChatCompletion(rec.context(t.Context()), req)
	require.NoError(t, err)
	return rec.list()
}

// assertServedBy checks that a request made exactly one attempt, served by region.
func assertServedBy(t *testing.T, attempts []failover.Attempt, region string, msgAndArgs ...any) {
	t.Helper()
	if assert.Len(t, attempts, 1, msgAndArgs...) {
		assert.Equal(t, region, attempts[0].Region, msgAndArgs...)
		assert.Equal(t, failover.OutcomeServed, attempts[0].Outcome, msgAndArgs...)
		assert.Equal(t, http.StatusOK, attempts[0].Status, msgAndArgs...)
	}
}

// fixedBackoff makes rests without Retry-After exact, so tests can name the instant a rest ends.
func fixedBackoff(d time.Duration) failover.Option {
	return failover.WithBackoff(func(int) time.Duration { return d })
}

// configFields are the fields of the *ConfigErrors joined in err, in order.
func configFields(err error) []string {
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	var fields []string
	for _, e := range errs {
		var ce *failover.ConfigError
		if errors.As(e, &ce) {
			fields = append(fields, ce.Field)
		}
	}
	return fields
}

// lockedBuffer is a bytes.Buffer that can be written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) bytes() *bytes.Buffer {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.NewBuffer(bytes.Clone(b.buf.Bytes()))
}

// count is how many times s appears in what was written.
func (b *lockedBuffer) count(s string) int { return strings.Count(b.bytes().String(), s) }

// useIdentity points azidentity's managed identity at id, App Service style, with no other identity source set.
func useIdentity(t *testing.T, id *failovertest.Identity) {
	t.Helper()
	clearAzureIdentityEnv(t)
	for k, v := range id.Env() {
		t.Setenv(k, v)
	}
}

// newManagedIdentity builds azidentity's managed identity credential, as a user would, reaching the identity
// endpoint through client (nil: azidentity's own transport). A user-assigned id keeps MSAL's process-wide token
// cache from serving one test's tokens to another.
func newManagedIdentity(t *testing.T, client *http.Client, id string) *azidentity.ManagedIdentityCredential {
	t.Helper()
	opts := &azidentity.ManagedIdentityCredentialOptions{}
	if client != nil {
		opts.ClientOptions.Transport = client
	}
	if id != "" {
		opts.ID = azidentity.ClientID(id)
	}
	cred, err := azidentity.NewManagedIdentityCredential(opts)
	require.NoError(t, err)
	return cred
}

// conversations are n one-question conversations, each question numbered.
func conversations(n int) [][]openai.ChatCompletionMessage {
	convs := make([][]openai.ChatCompletionMessage, n)
	for i := range convs {
		convs[i] = []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: fmt.Sprintf("question %d", i)}}
	}
	return convs
}

// benchPair is a failover client and a plain go-openai Azure client, both talking to the same healthy fake
// region, so a benchmark can measure what the failover layer adds to one call.
type benchPair struct {
	region   *failovertest.Server
	failover *failover.Client
	direct   *openai.Client
	req      openai.ChatCompletionRequest
	transp   *http.Transport
}

// newBenchPair starts the fake region and both clients; they are closed when the benchmark ends.
func newBenchPair(b *testing.B, opts ...failover.Option) *benchPair {
	b.Helper()
	return newBenchPairOf(b, nil, opts...)
}

// newBenchPairOf is newBenchPair with more regions after the healthy one: with a spare region, the client steers
// by quota (it needs two regions to choose between), though every call goes to the first.
func newBenchPairOf(b *testing.B, spares []failover.Region, opts ...failover.Option) *benchPair {
	b.Helper()
	region := failovertest.NewRegion("bench")
	c, err := failover.New(append([]failover.Region{{Endpoint: region.URL, APIKey: region.Key}}, spares...), opts...)
	if err != nil {
		b.Fatal(err)
	}
	transp := http.DefaultTransport.(*http.Transport).Clone()
	transp.MaxIdleConnsPerHost = 64
	cfg := openai.DefaultAzureConfig(region.Key, region.URL)
	cfg.APIVersion = failover.DefaultAPIVersion
	cfg.AzureModelMapperFunc = func(model string) string { return model }
	cfg.HTTPClient = &http.Client{Transport: transp}
	p := &benchPair{region: region, failover: c, direct: openai.NewClientWithConfig(cfg), transp: transp,
		req: openai.ChatCompletionRequest{Model: "gpt-4o", Messages: []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleSystem, Content: "You are a terse assistant."},
			{Role: openai.ChatMessageRoleUser, Content: "Say hello in five words."},
		}}}
	b.Cleanup(func() {
		c.CloseIdleConnections()
		transp.CloseIdleConnections()
		region.Close()
	})
	return p
}

// callDirect makes one chat completion with go-openai alone.
func (p *benchPair) callDirect(b *testing.B) {
	if _, err := p.direct.CreateChatCompletion(context.Background(), p.req); err != nil {
		b.Fatal(err)
	}
}

// callFailover makes one chat completion through the failover client.
func (p *benchPair) callFailover(b *testing.B) {
	if _, err := p.failover.CreateChatCompletion(context.Background(), p.req); err != nil {
		b.Fatal(err)
	}
}

// processCPU is the CPU time the process has used, user and system, in nanoseconds: client and fake server
// together. Less disturbed than wall time by how the two goroutines happen to be scheduled on 2 cores.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// assertSkip checks a Skip's exported fields (it also keeps the rest's kind, for the status mapping).
func assertSkip(t *testing.T, want, got failover.Skip) {
	t.Helper()
	assert.Equal(t, want.Region, got.Region)
	assert.Equal(t, want.State, got.State)
	assert.Equal(t, want.Until, got.Until)
	assert.Equal(t, want.Reason, got.Reason)
}

// readAll reads and closes an answer's body.
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(data)
}

// exhaustedAnswer is the *openai.APIError of the answer the Client gives as an HTTP doer when no backend serves
// (see RoundTrip): 429, 502 or 503 with the ExhaustedError's text. Nil for any other error.
func exhaustedAnswer(err error) *openai.APIError {
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) || !strings.HasPrefix(apiErr.Message, failover.ErrExhausted.Error()) {
		return nil
	}
	switch apiErr.HTTPStatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable:
		return apiErr
	}
	return nil
}
