package failovertest_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// azureClient is go-openai configured for Azure, the way a user without this library would call the region.
func azureClient(t *testing.T, s *failovertest.Server, key string) *openai.Client {
	cfg := openai.DefaultAzureConfig(key, s.URL)
	cfg.APIVersion = "2024-10-21"
	cfg.AzureModelMapperFunc = func(model string) string { return model }
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	cfg.HTTPClient = &http.Client{Transport: transport}
	return openai.NewClientWithConfig(cfg)
}

// post is send with POST.
func post(t *testing.T, url string, header http.Header, body string) (*http.Response, string) {
	t.Helper()
	return send(t, http.MethodPost, url, header, body)
}

func TestRegionAnswersLikeAzure(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	resp, err := azureClient(t, s, s.Key).CreateChatCompletion(t.Context(), chat())
	require.NoError(t, err)
	assert.Equal(t, "Hello from eastus.", resp.Choices[0].Message.Content)
	assert.Equal(t, "gpt-4o", resp.Model)
	assert.Equal(t, openai.FinishReasonStop, resp.Choices[0].FinishReason)
	assert.Positive(t, resp.Usage.TotalTokens)
	require.Len(t, resp.PromptFilterResults, 1)
	h := resp.Header()
	assert.Equal(t, "eastus", h.Get("X-Ms-Region"))
	assert.NotEmpty(t, h.Get("Apim-Request-Id"))
	assert.Equal(t, "99000", h.Get("X-Ratelimit-Remaining-Tokens"))

	calls := s.Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, failovertest.Call{Operation: "chat/completions", Deployment: "gpt-4o", Model: "gpt-4o",
		APIVersion: "2024-10-21", Authorized: true, Status: 200, Time: calls[0].Time, Body: calls[0].Body,
		Header: calls[0].Header}, calls[0])
	assert.Equal(t, s.Key, calls[0].Header.Get("Api-Key"))
	assert.Contains(t, string(calls[0].Body), "Hi there")
}

func TestRegionRefusesWrongKeysAndPaths(t *testing.T) {
	s := failovertest.NewRegion("eastus", failovertest.WithKey("right"))
	defer s.Close()
	_, err := azureClient(t, s, "wrong").CreateChatCompletion(t.Context(), chat())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 401, apiErr.HTTPStatusCode)
	assert.Contains(t, apiErr.Message, "Access denied due to invalid subscription key")
	assert.False(t, s.Calls()[0].Authorized)

	resp, body := post(t, s.URL+"/openai/deployments/gpt-4o/chat/completions", http.Header{"Api-Key": {"right"}}, `{}`)
	assert.Equal(t, 404, resp.StatusCode, "api-version is required")
	assert.JSONEq(t, `{"error":{"code":"404","message":"Resource not found"}}`, body)
	resp, _ = post(t, s.URL+"/openai/models?api-version=1", http.Header{"Api-Key": {"right"}}, `{}`)
	assert.Equal(t, 404, resp.StatusCode)
	resp, _ = post(t, s.URL+"/openai/deployments/gpt-4o/chat/completions?api-version=1", http.Header{"Api-Key": {"right"}}, `{not json`)
	assert.Equal(t, 400, resp.StatusCode)
}

func TestRegionWithDeployments(t *testing.T) {
	s := failovertest.NewRegion("eastus", failovertest.WithDeployments("gpt-4o"))
	defer s.Close()
	_, err := azureClient(t, s, s.Key).CreateChatCompletion(t.Context(), chat())
	require.NoError(t, err)
	req := chat()
	req.Model = "gpt-4.1"
	_, err = azureClient(t, s, s.Key).CreateChatCompletion(t.Context(), req)
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 404, apiErr.HTTPStatusCode)
	assert.Equal(t, "DeploymentNotFound", apiErr.Code)
}

func TestScriptThenDefault(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	s.Script(failovertest.OK("first"), failovertest.RateLimited(1500*time.Millisecond), failovertest.InternalError())
	s.SetDefault(failovertest.OK("default"))
	client := azureClient(t, s, s.Key)

	resp, err := client.CreateChatCompletion(t.Context(), chat())
	require.NoError(t, err)
	assert.Equal(t, "first", resp.Choices[0].Message.Content)

	resp, err = client.CreateChatCompletion(t.Context(), chat())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 429, apiErr.HTTPStatusCode)
	assert.Equal(t, "429", apiErr.Code)
	assert.Contains(t, apiErr.Message, "Please retry after 2 seconds")
	h := resp.Header()
	assert.Equal(t, "2", h.Get("Retry-After"), "whole seconds, rounded up")
	assert.Equal(t, "1500", h.Get("Retry-After-Ms"))
	assert.Equal(t, "0", h.Get("X-Ratelimit-Remaining-Tokens"))

	_, err = client.CreateChatCompletion(t.Context(), chat())
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 500, apiErr.HTTPStatusCode)
	assert.Equal(t, "server_error", apiErr.Type)

	for range 2 {
		resp, err = client.CreateChatCompletion(t.Context(), chat())
		require.NoError(t, err)
		assert.Equal(t, "default", resp.Choices[0].Message.Content)
	}
	assert.Equal(t, 5, s.Requests())
}

func TestRateLimitedWithoutRetryAfter(t *testing.T) {
	r := failovertest.RateLimited(0)
	assert.Empty(t, r.Header.Get("Retry-After"))
	assert.Empty(t, r.Header.Get("Retry-After-Ms"))
	assert.Equal(t, 429, r.Status)
}

func TestRegionStreams(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	s.Script(failovertest.OK("one two three"))
	stream, err := azureClient(t, s, s.Key).CreateChatCompletionStream(t.Context(), chat())
	require.NoError(t, err)
	defer stream.Close()

	first, err := stream.Recv()
	require.NoError(t, err)
	assert.Empty(t, first.Choices, "Azure's first event carries only the prompt filter results")
	assert.NotEmpty(t, first.PromptFilterResults)
	var text strings.Builder
	var finish openai.FinishReason
	for range 20 {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content)
			if c.FinishReason != "" {
				finish = c.FinishReason
			}
		}
	}
	assert.Equal(t, "one two three", text.String())
	assert.Equal(t, openai.FinishReasonStop, finish)
	assert.True(t, s.Calls()[0].Stream)
}

func TestStreamCut(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	s.Script(failovertest.Reply{Content: "one two three four", StreamCutAfter: 2})
	stream, err := azureClient(t, s, s.Key).CreateChatCompletionStream(t.Context(), chat())
	require.NoError(t, err)
	defer stream.Close()
	text, err := failovertest.ReadStream(stream)
	assert.Error(t, err, "a cut stream does not end cleanly")
	assert.Equal(t, "one two ", text)
}

func TestRegionEmbeddings(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	client := azureClient(t, s, s.Key)
	resp, err := client.CreateEmbeddings(t.Context(), openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: []string{"a", "b", "c"}})
	require.NoError(t, err)
	require.Len(t, resp.Data, 3)
	again, err := client.CreateEmbeddings(t.Context(), openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: "b"})
	require.NoError(t, err)
	assert.Equal(t, resp.Data[1].Embedding, again.Data[0].Embedding, "the same input gets the same vector")
	assert.NotEqual(t, resp.Data[0].Embedding, resp.Data[1].Embedding)
	assert.Equal(t, "embeddings", s.Calls()[0].Operation)
}

func TestOpenAIAnswersLikeOpenAI(t *testing.T) {
	s := failovertest.NewOpenAI(failovertest.WithKey("sk-right"), failovertest.WithEcho())
	defer s.Close()
	assert.True(t, strings.HasSuffix(s.URL, "/v1"))
	cfg := openai.DefaultConfig("sk-right")
	cfg.BaseURL = s.URL
	resp, err := openai.NewClientWithConfig(cfg).CreateChatCompletion(t.Context(), chat())
	require.NoError(t, err)
	assert.Equal(t, "Hi there", resp.Choices[0].Message.Content, "WithEcho repeats the last message")
	assert.Empty(t, resp.Header().Get("X-Ms-Region"))

	cfg = openai.DefaultConfig("sk-wrong")
	cfg.BaseURL = s.URL
	_, err = openai.NewClientWithConfig(cfg).CreateChatCompletion(t.Context(), chat())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "invalid_api_key", apiErr.Code)

	s.Script(failovertest.InsufficientQuota())
	cfg = openai.DefaultConfig("sk-right")
	cfg.BaseURL = s.URL
	_, err = openai.NewClientWithConfig(cfg).CreateChatCompletion(t.Context(), chat())
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "insufficient_quota", apiErr.Type)
}

func TestDisconnectAndHang(t *testing.T) {
	arrived := make(chan struct{}, 2)
	s := failovertest.NewRegion("eastus", failovertest.WithOnRequest(func(failovertest.Call) { arrived <- struct{}{} }))
	s.Script(failovertest.Disconnect(), failovertest.Hang())
	client := azureClient(t, s, s.Key)
	_, err := client.CreateChatCompletion(t.Context(), chat())
	require.Error(t, err)
	assert.Zero(t, s.Calls()[0].Status)
	<-arrived

	done := make(chan error, 1)
	go func() {
		_, err := client.CreateChatCompletion(context.Background(), chat())
		done <- err
	}()
	<-arrived
	s.Close() // a hung reply ends when the server closes
	require.Error(t, <-done)
}

func TestNetworkOutsideABubble(t *testing.T) {
	n := failovertest.NewNetwork()
	defer n.Close()
	s := failovertest.NewRegion("eastus", failovertest.OnNetwork(n))
	defer s.Close()
	cfg := openai.DefaultAzureConfig(s.Key, s.URL)
	cfg.HTTPClient = n.Client()
	resp, err := openai.NewClientWithConfig(cfg).CreateChatCompletion(t.Context(), chat())
	require.NoError(t, err)
	assert.Equal(t, "Hello from eastus.", resp.Choices[0].Message.Content)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://127.0.0.1:1/", nil)
	require.NoError(t, err)
	_, err = n.Client().Do(req)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
}

func TestOpenAIModelsAndRateLimit(t *testing.T) {
	s := failovertest.NewOpenAI(failovertest.WithDeployments("gpt-4o"))
	defer s.Close()
	cfg := openai.DefaultConfig(s.Key)
	cfg.BaseURL = s.URL
	client := openai.NewClientWithConfig(cfg)
	_, err := client.CreateChatCompletion(t.Context(), chat())
	require.NoError(t, err, "a listed model is served")

	req := chat()
	req.Model = "gpt-unknown"
	_, err = client.CreateChatCompletion(t.Context(), req)
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 404, apiErr.HTTPStatusCode)
	assert.Equal(t, "model_not_found", apiErr.Code)

	s.Script(failovertest.OpenAIRateLimited(1500*time.Millisecond), failovertest.Reply{Status: 502})
	resp, err := client.CreateChatCompletion(t.Context(), chat())
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "rate_limit_exceeded", apiErr.Code)
	assert.Contains(t, apiErr.Message, "Please try again in 1.500s")
	assert.Equal(t, "1.5s", resp.Header().Get("X-Ratelimit-Reset-Tokens"))
	assert.Equal(t, "2", resp.Header().Get("Retry-After"))

	_, err = client.CreateChatCompletion(t.Context(), chat())
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "server_error", apiErr.Type, "default error bodies are OpenAI-shaped on the OpenAI fake")
}

func TestStatusIsRecordedOnlyWhenSent(t *testing.T) {
	statuses := make(chan int, 2)
	s := failovertest.NewRegion("eastus", failovertest.WithOnRequest(func(c failovertest.Call) { statuses <- c.Status }))
	defer s.Close()
	s.Script(failovertest.Slow(time.Hour, failovertest.Reply{}), failovertest.Unavailable())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = azureClient(t, s, s.Key).CreateChatCompletion(ctx, chat())
	}()
	assert.Zero(t, <-statuses, "OnRequest runs before the answer")
	cancel() // the client gives up on the slow answer
	<-done

	_, err := azureClient(t, s, s.Key).CreateChatCompletion(t.Context(), chat())
	require.Error(t, err)
	<-statuses
	calls := s.Calls()
	assert.Zero(t, calls[0].Status, "nothing was sent to the client that gave up")
	assert.Equal(t, 503, calls[1].Status)
}

// OpenAI's clients ask for base64 embeddings by default: little-endian float32s, the same vector as the floats.
func TestRegionEmbeddingsInBase64(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	body := `{"model":"text-embedding-3-small","input":"fox"}`
	h := http.Header{"Api-Key": {s.Key}, "Content-Type": {"application/json"}}
	_, floats := post(t, s.URL+"/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21", h, body)
	_, encoded := post(t, s.URL+"/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21", h,
		`{"model":"text-embedding-3-small","input":"fox","encoding_format":"base64"}`)
	var f struct {
		Data []struct{ Embedding []float64 }
	}
	var b struct {
		Data []struct{ Embedding string }
	}
	require.NoError(t, json.Unmarshal([]byte(floats), &f), floats)
	require.NoError(t, json.Unmarshal([]byte(encoded), &b), encoded)
	raw, err := base64.StdEncoding.DecodeString(b.Data[0].Embedding)
	require.NoError(t, err)
	require.Len(t, raw, 4*len(f.Data[0].Embedding))
	for i, want := range f.Data[0].Embedding {
		got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		assert.InDelta(t, want, float64(got), 1e-6, "dimension %d", i)
	}
}
