package failover_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
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

// chunkReceiver is a stream of chat completion chunks: go-openai's, or the failover client's.
type chunkReceiver interface {
	Recv() (openai.ChatCompletionStreamResponse, error)
}

// readStream reads a stream to its end (at most 1000 chunks) and returns its text.
func readStream(stream chunkReceiver) (string, error) {
	var text strings.Builder
	for range 1000 {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return text.String(), nil
		}
		if err != nil {
			return text.String(), err
		}
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	return text.String(), errors.New("stream did not end within 1000 chunks")
}

// streamText opens a chat completion stream through client and reads it to its end.
func streamText(ctx context.Context, t *testing.T, client *failover.Client) string {
	t.Helper()
	stream, err := doerClient(client).CreateChatCompletionStream(ctx, chatRequest())
	require.NoError(t, err)
	defer stream.Close()
	text, err := readStream(stream)
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
