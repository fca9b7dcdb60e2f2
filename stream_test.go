package failover_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStreamFailsOverBeforeItsFirstContent(t *testing.T) {
	cases := []struct {
		name  string
		reply failovertest.Reply
		cause string
	}{
		{"429", failovertest.RateLimited(30 * time.Second), "exceeded token rate limit"},
		{"error event as the first data", failovertest.StreamFailure(1), "stream began with an error event"},
		{"connection dropped", failovertest.Disconnect(), "EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			servers[0].Script(tc.reply)
			client := newClient(t, regionsOf(servers...))

			stream, err := client.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Messages: hello()})
			require.NoError(t, err)
			defer stream.Close()
			text, err := failovertest.ReadStream(stream)
			require.NoError(t, err)
			assert.Equal(t, "Hello from westus.", text, "nothing of eastus's failed stream reaches the caller")
			assert.Equal(t, "westus", stream.Region())
			assert.Equal(t, "westus", stream.Header().Get("X-Ms-Region"))
			attempts := stream.Attempts()
			require.Len(t, attempts, 2)
			assert.Equal(t, failover.OutcomeFailedOver, attempts[0].Outcome)
			assert.ErrorContains(t, attempts[0].Err, tc.cause)
			assert.Positive(t, attempts[0].Rest)
			assert.Equal(t, failover.OutcomeServed, attempts[1].Outcome)
		})
	}
}

func TestStreamHeadersAreCapturedOnErrors(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.RateLimited(30 * time.Second))
	client := newClient(t, regionsOf(servers...))

	var rec recorder
	stream, err := client.CreateChatCompletionStream(rec.context(t.Context()), chatRequest())
	require.NoError(t, err)
	defer stream.Close()
	throttled := rec.first().Header
	assert.Equal(t, "30", throttled.Get("Retry-After"))
	assert.Equal(t, "30000", throttled.Get("Retry-After-Ms"))
	assert.Equal(t, "0", throttled.Get("X-Ratelimit-Remaining-Tokens"))
	assert.Equal(t, "eastus", throttled.Get("X-Ms-Region"))
	assert.Equal(t, throttled, stream.Attempts()[0].Header)
}

func TestStreamThatEndsAfterItsPreambleFailsOver(t *testing.T) {
	// Azure's first event (prompt filter results, no choices) and a role-only chunk are not content: a stream
	// that ends after them has given the caller nothing, and the next region can still serve.
	preamble := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[],\"prompt_filter_results\":[{\"prompt_index\":0}]}\n\n")
		fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n")
	}))
	t.Cleanup(preamble.Close)
	westus := startRegions(t, []string{"westus"})[0]
	client := newClient(t, append([]failover.Region{{Name: "preamble", Endpoint: preamble.URL, APIKey: "k"}}, regionsOf(westus)...))

	var rec recorder
	assert.Equal(t, "Hello from westus.", streamText(rec.context(t.Context()), t, client))
	assert.ErrorContains(t, rec.first().Err, "stream ended before any content")
}

func TestStreamCutAfterContentIsATypedError(t *testing.T) {
	cases := []struct {
		name     string
		reply    failovertest.Reply
		received string
		apiError bool
	}{
		{"error event", failovertest.Reply{Content: "one two three four", StreamErrorAt: 3}, "one two ", true},
		{"connection closed without [DONE]", failovertest.Reply{Content: "one two three four", StreamCutAfter: 2}, "one two ", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			servers[0].Script(tc.reply)
			client := newClient(t, regionsOf(servers...))

			stream, err := client.CreateChatCompletionStream(t.Context(), chatRequest())
			require.NoError(t, err)
			defer stream.Close()
			text, err := failovertest.ReadStream(stream)
			assert.Equal(t, tc.received, text)
			require.Error(t, err, "a cut stream must not end like a complete one")
			assert.NotErrorIs(t, err, io.EOF)
			assert.ErrorIs(t, err, failover.ErrStreamCut)
			var cut *failover.StreamCutError
			require.ErrorAs(t, err, &cut)
			assert.Equal(t, "eastus", cut.Region)
			assert.Equal(t, tc.received, cut.Received)
			var apiErr *openai.APIError
			assert.Equal(t, tc.apiError, errors.As(err, &apiErr), "the error event's APIError is reachable")
			assert.Contains(t, err.Error(), "stream from eastus cut after 8 bytes of text")
			_, again := stream.Recv()
			assert.Same(t, err, again, "the stream stays ended")
			assert.Zero(t, servers[1].Requests(), "after content reached the caller, no other region is asked")
		})
	}
}

func TestStreamCutIsAnErrorForPlainGoOpenAIClientsToo(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	servers[0].Script(failovertest.Reply{Content: "one two three", StreamCutAfter: 1})
	client := newClient(t, regionsOf(servers...))

	stream, err := doerClient(client).CreateChatCompletionStream(t.Context(), chatRequest())
	require.NoError(t, err)
	defer stream.Close()
	text, err := failovertest.ReadStream(stream)
	assert.Equal(t, "one ", text)
	assert.ErrorIs(t, err, failover.ErrStreamCut, "go-openai would have reported a clean io.EOF")
}

func TestCompleteStreamEndsWithEOF(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	servers[0].Script(failovertest.OK("a complete answer"))
	client := newClient(t, regionsOf(servers...))

	stream, err := client.CreateChatCompletionStream(t.Context(), chatRequest())
	require.NoError(t, err)
	text, err := failovertest.ReadStream(stream)
	require.NoError(t, err)
	assert.Equal(t, "a complete answer", text)
	_, err = stream.Recv()
	assert.Equal(t, io.EOF, err)
	require.NoError(t, stream.Close())
}

func TestStreamRequestErrorsAreReturned(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.ContentFilter())
	client := newClient(t, regionsOf(servers...))

	var rec recorder
	_, err := client.CreateChatCompletionStream(rec.context(t.Context()), chatRequest())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "content_filter", apiErr.Code)
	assert.Zero(t, servers[1].Requests())
	assert.Equal(t, "eastus", rec.first().Header.Get("X-Ms-Region"), "headers go-openai drops are in the trace")
}

func TestCreateEmbeddingsFailsOver(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.RateLimited(time.Minute))
	client := newClient(t, regionsOf(servers...))

	resp, err := client.CreateEmbeddings(t.Context(), embeddingRequest())
	require.NoError(t, err)
	require.Len(t, resp.Data, 1)
	assert.NotEmpty(t, resp.Data[0].Embedding)
	calls := servers[1].Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, "embeddings", calls[0].Operation)
	assert.Equal(t, "text-embedding-3-small", calls[0].Deployment)

	// The 429 rested gpt-4o's sibling, text-embedding-3-small, on eastus, but not chat.
	content, err := client.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from eastus.", content)
}

func TestEchoedKeyInHeadersIsScrubbed(t *testing.T) {
	const key = "header-echo-secret-0123456789"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo-Api-Key", "seen "+r.Header.Get("Api-Key"))
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(echo.Close)
	client := newClient(t, []failover.Region{{Name: "echo", Endpoint: echo.URL, APIKey: key}}, failover.WithMaxWait(0))
	_, err := client.ChatCompletion(t.Context(), hello())
	require.Error(t, err)
	for _, out := range []string{fmt.Sprintf("%#v", err), fmt.Sprintf("%+v", err), err.Error()} {
		assert.NotContains(t, out, key)
	}
	var exhausted *failover.ExhaustedError
	require.ErrorAs(t, err, &exhausted)
	assert.Equal(t, "seen [REDACTED]", exhausted.Attempts[0].Header.Get("X-Echo-Api-Key"))
}

func TestStreamCutRestsTheRegion(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.Reply{Content: "one two three", StreamErrorAt: 2})
	client := newClient(t, regionsOf(servers...))
	stream, err := client.CreateChatCompletionStream(t.Context(), chatRequest())
	require.NoError(t, err)
	_, err = failovertest.ReadStream(stream)
	require.ErrorIs(t, err, failover.ErrStreamCut)
	require.NoError(t, stream.Close())
	assert.Equal(t, failover.StateResting, client.Health()[0].Models[0].State, "a region that breaks streams off rests")
	content, err := client.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from westus.", content)
}
