package failovertest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quotaFixture is a region under a quota on an in-memory network, for a testing/synctest bubble: created in the
// bubble, and closed by t's cleanups before the bubble ends.
type quotaFixture struct {
	network *failovertest.Network
	region  *failovertest.Server
	api     *openai.Client // go-openai for Azure, on the network
}

func newQuotaFixture(t *testing.T, q failovertest.Quota, opts ...failovertest.Option) *quotaFixture {
	t.Helper()
	n := failovertest.NewNetwork()
	t.Cleanup(n.Close)
	s := failovertest.NewRegion("eastus", append([]failovertest.Option{failovertest.OnNetwork(n), failovertest.WithQuota(q)}, opts...)...)
	t.Cleanup(s.Close) // runs before n.Close
	cfg := openai.DefaultAzureConfig(s.Key, s.URL)
	cfg.APIVersion = "2024-10-21"
	cfg.AzureModelMapperFunc = func(model string) string { return model }
	cfg.HTTPClient = n.Client()
	return &quotaFixture{network: n, region: s, api: openai.NewClientWithConfig(cfg)}
}

// post sends body to a deployment's chat completions with the region's key, over the network.
func (f *quotaFixture) post(t *testing.T, deployment, body string) (*http.Response, string) {
	t.Helper()
	return f.postWithKey(t, deployment, f.region.Key, body)
}

func (f *quotaFixture) postWithKey(t *testing.T, deployment, key, body string) (*http.Response, string) {
	t.Helper()
	url := f.region.URL + "/openai/deployments/" + deployment + "/chat/completions?api-version=2024-10-21"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Api-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.network.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(data)
}

// chatBody is a chat request for gpt-4o of one message "abcd" (1 token, 4 for the message) and maxTokens: it
// costs maxTokens+5 tokens.
func chatBody(maxTokens int) string {
	return fmt.Sprintf(`{"model":"gpt-4o","messages":[{"role":"user","content":"abcd"}],"max_tokens":%d}`, maxTokens)
}

// remaining reads the quota headers of an answer: "-" for one that is missing.
func remaining(h http.Header) (requests, tokens string) {
	get := func(k string) string {
		if v := h.Values(k); len(v) > 0 {
			return v[0]
		}
		return "-"
	}
	return get("X-Ratelimit-Remaining-Requests"), get("X-Ratelimit-Remaining-Tokens")
}

func TestQuotaRemainingFallsByRequestAndByEstimate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuotaFixture(t, failovertest.Quota{RequestsPerMinute: 5, TokensPerMinute: 1000})
		req := chat()
		req.MaxCompletionTokens = 100
		used := 0
		for i := 1; i <= 3; i++ {
			resp, err := f.api.CreateChatCompletion(t.Context(), req)
			require.NoError(t, err)
			calls := f.region.Calls()
			used += failovertest.RequestTokens(calls[len(calls)-1].Body)
			requests, tokens := remaining(resp.Header())
			assert.Equal(t, strconv.Itoa(5-i), requests, "request %d", i)
			assert.Equal(t, strconv.Itoa(1000-used), tokens, "request %d", i)
			assert.Empty(t, resp.Header().Get("X-Ratelimit-Limit-Requests"), "limits are sent on a 429 only")
		}
		assert.Equal(t, 3*(2+4+100), used, `"Hi there" is 8 bytes, 2 tokens, and one message 4 more`)

		resp, body := f.post(t, "gpt-4o", chatBody(400)) // 405 tokens
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		requests, tokens := remaining(resp.Header)
		assert.Equal(t, "1", requests)
		assert.Equal(t, strconv.Itoa(1000-used-405), tokens)
	})
}

// The window slides: a request leaves it 60 seconds after it was admitted, and a refused request is told how long
// until then.
func TestQuotaRefusesAtTheRequestsLimitUntilTheWindowMoves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuotaFixture(t, failovertest.Quota{RequestsPerMinute: 2})
		start := time.Now()
		resp, _ := f.post(t, "gpt-4o", chatBody(10))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "1", resp.Header.Get("X-Ratelimit-Remaining-Requests"))
		assert.Empty(t, resp.Header.Values("X-Ratelimit-Remaining-Tokens"), "no tokens limit, no tokens header")
		time.Sleep(1500 * time.Millisecond)
		resp, _ = f.post(t, "gpt-4o", chatBody(10))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "0", resp.Header.Get("X-Ratelimit-Remaining-Requests"))

		time.Sleep(time.Second) // 2.5 s in: the first request leaves the window 57.5 s from now
		resp, body := f.post(t, "gpt-4o", chatBody(10))
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		want := failovertest.RateLimited(57500 * time.Millisecond)
		assert.JSONEq(t, want.Body, body, "the answer of RateLimited")
		assert.Contains(t, body, "Please retry after 58 seconds")
		assert.Equal(t, "58", resp.Header.Get("Retry-After"), "whole seconds, rounded up")
		assert.Equal(t, "57500", resp.Header.Get("Retry-After-Ms"))
		assert.Equal(t, "2", resp.Header.Get("X-Ratelimit-Limit-Requests"))
		assert.Empty(t, resp.Header.Values("X-Ratelimit-Limit-Tokens"))
		requests, tokens := remaining(resp.Header)
		assert.Equal(t, "0", requests)
		assert.Equal(t, "-", tokens)
		assert.Equal(t, "eastus", resp.Header.Get("X-Ms-Region"))

		time.Sleep(57500*time.Millisecond - time.Millisecond)
		resp, _ = f.post(t, "gpt-4o", chatBody(10))
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "a millisecond early")
		assert.Equal(t, "1", resp.Header.Get("Retry-After-Ms"))
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))

		time.Sleep(time.Millisecond)
		assert.Equal(t, time.Minute, time.Since(start))
		resp, _ = f.post(t, "gpt-4o", chatBody(10))
		require.Equal(t, http.StatusOK, resp.StatusCode, "the first request has left the window")
		assert.Equal(t, "0", resp.Header.Get("X-Ratelimit-Remaining-Requests"), "the second is still in it")
		resp, _ = f.post(t, "gpt-4o", chatBody(10))
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		assert.Equal(t, "1500", resp.Header.Get("Retry-After-Ms"), "until the second leaves")
		assert.Equal(t, "2", resp.Header.Get("Retry-After"))

		time.Sleep(time.Hour)
		resp, _ = f.post(t, "gpt-4o", chatBody(10))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "1", resp.Header.Get("X-Ratelimit-Remaining-Requests"), "an old window is empty")
	})
}

func TestQuotaRefusesAtTheTokensLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuotaFixture(t, failovertest.Quota{TokensPerMinute: 100})
		resp, _ := f.post(t, "gpt-4o", chatBody(35)) // 40 tokens
		require.Equal(t, http.StatusOK, resp.StatusCode)
		requests, tokens := remaining(resp.Header)
		assert.Equal(t, "-", requests, "no requests limit, no requests header")
		assert.Equal(t, "60", tokens)
		time.Sleep(10 * time.Second)
		resp, _ = f.post(t, "gpt-4o", chatBody(35))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "20", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))

		time.Sleep(10 * time.Second)
		// 80 tokens fit only once both requests have left: the second leaves 50 s from now.
		resp, _ = f.post(t, "gpt-4o", chatBody(75))
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		assert.Equal(t, "50", resp.Header.Get("Retry-After"))
		assert.Equal(t, "50000", resp.Header.Get("Retry-After-Ms"))
		assert.Equal(t, "100", resp.Header.Get("X-Ratelimit-Limit-Tokens"))
		assert.Empty(t, resp.Header.Values("X-Ratelimit-Limit-Requests"))
		assert.Equal(t, "20", resp.Header.Get("X-Ratelimit-Remaining-Tokens"), "what is left, short of what it needs")
		// 60 tokens fit once the first has left, 40 s from now.
		resp, _ = f.post(t, "gpt-4o", chatBody(55))
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		assert.Equal(t, "40000", resp.Header.Get("Retry-After-Ms"))
		// 15 tokens fit now.
		resp, _ = f.post(t, "gpt-4o", chatBody(10))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "5", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))

		// A request over the limit by itself never fits.
		resp, _ = f.post(t, "gpt-4.1", chatBody(96))
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		assert.Equal(t, "60", resp.Header.Get("Retry-After"))
		assert.Equal(t, "60000", resp.Header.Get("Retry-After-Ms"))
		assert.Equal(t, "100", resp.Header.Get("X-Ratelimit-Remaining-Tokens"), "gpt-4.1's window is empty")
		resp, _ = f.post(t, "gpt-4.1", chatBody(95))
		require.Equal(t, http.StatusOK, resp.StatusCode, "exactly the limit fits")
		assert.Equal(t, "0", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))

		time.Sleep(time.Minute)
		resp, _ = f.post(t, "gpt-4o", chatBody(75))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "20", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	})
}

func TestQuotaIsPerDeployment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuotaFixture(t, failovertest.Quota{RequestsPerMinute: 1})
		for _, deployment := range []string{"gpt-4o", "gpt-4.1"} {
			resp, _ := f.post(t, deployment, chatBody(1))
			assert.Equal(t, http.StatusOK, resp.StatusCode, deployment)
			assert.Equal(t, "0", resp.Header.Get("X-Ratelimit-Remaining-Requests"), deployment)
		}
		resp, _ := f.post(t, "gpt-4o", chatBody(1))
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

		// On a fake OpenAI API, each model has its quota.
		openAI := failovertest.NewOpenAI(failovertest.OnNetwork(f.network), failovertest.WithQuota(failovertest.Quota{RequestsPerMinute: 1}))
		defer openAI.Close()
		cfg := openai.DefaultConfig(openAI.Key)
		cfg.BaseURL, cfg.HTTPClient = openAI.URL, f.network.Client()
		api := openai.NewClientWithConfig(cfg)
		resp1, err := api.CreateChatCompletion(t.Context(), chat())
		require.NoError(t, err)
		assert.Equal(t, "0", resp1.Header().Get("X-Ratelimit-Remaining-Requests"))
		_, err = api.CreateChatCompletion(t.Context(), chat())
		var apiErr *openai.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, http.StatusTooManyRequests, apiErr.HTTPStatusCode)
		emb, err := api.CreateEmbeddings(t.Context(), openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: "fox"})
		require.NoError(t, err, "another model has its own window")
		assert.Equal(t, "0", emb.Header().Get("X-Ratelimit-Remaining-Requests"))
	})
}

// A refused request does not enter the window, nor use up a scripted reply; requests refused before the quota
// (a wrong key, an unknown deployment, a body that is not JSON) do not count either.
func TestQuotaCountsOnlyWhatItAdmits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuotaFixture(t, failovertest.Quota{RequestsPerMinute: 1}, failovertest.WithDeployments("gpt-4o"))
		f.region.Script(failovertest.OK("first"), failovertest.OK("second"))

		resp, _ := f.postWithKey(t, "gpt-4o", "wrong", chatBody(1))
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Empty(t, resp.Header.Values("X-Ratelimit-Remaining-Requests"))
		resp, _ = f.post(t, "gpt-4.1", chatBody(1))
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		resp, _ = f.post(t, "gpt-4o", `{not json`)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

		got, err := f.api.CreateChatCompletion(t.Context(), chat())
		require.NoError(t, err, "what came before did not count")
		assert.Equal(t, "first", got.Choices[0].Message.Content)

		time.Sleep(30 * time.Second)
		_, err = f.api.CreateChatCompletion(t.Context(), chat())
		var apiErr *openai.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, http.StatusTooManyRequests, apiErr.HTTPStatusCode)
		assert.Equal(t, "429", apiErr.Code)
		assert.Contains(t, apiErr.Message, "Please retry after 30 seconds")

		time.Sleep(30 * time.Second)
		got, err = f.api.CreateChatCompletion(t.Context(), chat())
		require.NoError(t, err, "the refused request did not enter the window")
		assert.Equal(t, "second", got.Choices[0].Message.Content, "nor use up the script")

		var statuses []int
		for _, c := range f.region.Calls() {
			statuses = append(statuses, c.Status)
		}
		assert.Equal(t, []int{401, 404, 400, 200, 429, 200}, statuses)
		assert.Equal(t, map[int]int{200: 2, 400: 1, 401: 1, 404: 1, 429: 1}, f.region.Statuses())
	})
}

func TestQuotaHeadersOnEveryAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuotaFixture(t, failovertest.Quota{RequestsPerMinute: 10, TokensPerMinute: 1000})
		f.region.Script(failovertest.OK("one two three"), failovertest.InternalError(),
			failovertest.Reply{Header: http.Header{"X-Ratelimit-Remaining-Tokens": {"7"}}})

		stream, err := f.api.CreateChatCompletionStream(t.Context(), chat())
		require.NoError(t, err)
		text, err := failovertest.ReadStream(stream)
		require.NoError(t, err)
		stream.Close()
		assert.Equal(t, "one two three", text)
		tokens := failovertest.RequestTokens(f.region.Calls()[0].Body)
		requests, left := remaining(stream.Header())
		assert.Equal(t, "9", requests)
		assert.Equal(t, strconv.Itoa(1000-tokens), left)
		assert.Equal(t, "text/event-stream", stream.Header().Get("Content-Type"))

		resp, _ := f.post(t, "gpt-4o", chatBody(5)) // 10 tokens
		assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
		requests, left = remaining(resp.Header)
		assert.Equal(t, "8", requests, "a scripted failure was admitted and counts")
		assert.Equal(t, strconv.Itoa(1000-tokens-10), left)

		resp, _ = f.post(t, "gpt-4o", chatBody(5))
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		requests, left = remaining(resp.Header)
		assert.Equal(t, "7", requests)
		assert.Equal(t, "7", left, "a reply's own header wins")
	})
}

func TestStatusesWithoutCallLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuotaFixture(t, failovertest.Quota{RequestsPerMinute: 2}, failovertest.WithoutCallLog())
		assert.Empty(t, f.region.Statuses())
		f.region.Script(failovertest.Disconnect())
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			f.region.URL+"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", strings.NewReader(chatBody(1)))
		require.NoError(t, err)
		req.Header.Set("Api-Key", f.region.Key)
		_, err = f.network.Client().Do(req)
		require.Error(t, err, "a disconnect answers nothing")

		resp, _ := f.post(t, "gpt-4o", chatBody(1))
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		resp, _ = f.post(t, "gpt-4o", chatBody(1))
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the disconnected request was admitted")
		resp, _ = f.postWithKey(t, "gpt-4o", "wrong", chatBody(1))
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

		statuses := f.region.Statuses()
		assert.Equal(t, map[int]int{200: 1, 401: 1, 429: 1}, statuses)
		statuses[200] = 99
		assert.Equal(t, 1, f.region.Statuses()[200], "a copy")
		assert.Empty(t, f.region.Calls())
		assert.Equal(t, 4, f.region.Requests())
	})
}

// Without a quota, or with the zero Quota, successes carry the fixed figures of old, and there are no limits.
func TestZeroQuotaLimitsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuotaFixture(t, failovertest.Quota{})
		for range 3 {
			resp, _ := f.post(t, "gpt-4o", chatBody(1_000_000))
			require.Equal(t, http.StatusOK, resp.StatusCode)
			requests, tokens := remaining(resp.Header)
			assert.Equal(t, "99", requests)
			assert.Equal(t, "99000", tokens)
		}
	})
}

func TestRequestTokens(t *testing.T) {
	marshal := func(v any) string {
		data, err := json.Marshal(v)
		require.NoError(t, err)
		return string(data)
	}
	msg := func(content string) openai.ChatCompletionMessage {
		return openai.ChatCompletionMessage{Role: openai.ChatMessageRoleUser, Content: content}
	}
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"not JSON", `{not json`, 0},
		{"empty", `{}`, 0},
		{"one message", marshal(openai.ChatCompletionRequest{Model: "gpt-4o", Messages: []openai.ChatCompletionMessage{msg("Hi there")}}), 2 + 4},
		{"text rounded up over all messages", marshal(openai.ChatCompletionRequest{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessage{msg("abcde"), msg(""), msg("fgh")}}), 2 + 3*4},
		{"bytes, not characters", `{"messages":[{"role":"user","content":"héllo!!!"}]}`, 3 + 4},
		{"max_tokens", `{"messages":[{"role":"user","content":"abcd"}],"max_tokens":50}`, 1 + 4 + 50},
		{"max_completion_tokens", marshal(openai.ChatCompletionRequest{Messages: []openai.ChatCompletionMessage{msg("abcd")}, MaxCompletionTokens: 70}), 1 + 4 + 70},
		{"max_tokens first", `{"messages":[{"role":"user","content":"abcd"}],"max_tokens":50,"max_completion_tokens":70}`, 1 + 4 + 50},
		{"times n", marshal(openai.ChatCompletionRequest{Messages: []openai.ChatCompletionMessage{msg("abcd")}, MaxCompletionTokens: 50, N: 3}), 1 + 4 + 150},
		{"max_tokens times n", `{"messages":[{"role":"user","content":"abcd"}],"max_tokens":50,"n":2}`, 1 + 4 + 100},
		{"n of 1", `{"messages":[{"role":"user","content":"abcd"}],"max_tokens":50,"n":1}`, 1 + 4 + 50},
		{"n without a budget", `{"messages":[{"role":"user","content":"abcd"}],"n":3}`, 1 + 4},
		{"array content", marshal(openai.ChatCompletionRequest{Messages: []openai.ChatCompletionMessage{{Role: "user", MultiContent: []openai.ChatMessagePart{
			{Type: openai.ChatMessagePartTypeText, Text: "What is in"},
			{Type: openai.ChatMessagePartTypeImageURL, ImageURL: &openai.ChatMessageImageURL{URL: "https://example.com/a-long-image-url.png"}},
			{Type: openai.ChatMessagePartTypeText, Text: " this?"},
		}}}}), 4 + 4},
		{"completion prompt", marshal(openai.CompletionRequest{Model: "gpt-35-turbo-instruct", Prompt: "Say this is a test", MaxTokens: 7}), 5 + 7},
		{"completion prompts", `{"prompt":["abc","defgh"],"max_tokens":2,"n":2}`, 2 + 4},
		{"embedding input", marshal(openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: "The quick brown fox"}), 5},
		{"embedding inputs", marshal(openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: []string{"a", "bc", "def"}}), 2},
		{"token arrays count nothing", `{"input":[[1,2,3]]}`, 0},
		{"a budget that is not a number", `{"messages":[{"role":"user","content":"abcd"}],"max_tokens":"lots"}`, 1 + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, failovertest.RequestTokens([]byte(tc.body)), tc.body)
		})
	}
}
