package failover_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegionsAreTriedInOrder(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus", "swedencentral"})
	client := newClient(t, regionsOf(servers...))

	for range 3 {
		var rec recorder
		content, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", content)
		assert.Equal(t, []string{"eastus"}, rec.regions())
	}
	assert.Equal(t, 3, servers[0].Requests())
	assert.Zero(t, servers[1].Requests())
	assert.Zero(t, servers[2].Requests())
	assert.Equal(t, []string{"eastus", "westus", "swedencentral"}, client.Regions())
}

func TestRateLimitedRegionIsSkipped(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus", "swedencentral"})
	servers[0].SetDefault(failovertest.RateLimited(30 * time.Second))
	servers[1].Script(failovertest.RateLimited(0))
	client := newClient(t, regionsOf(servers...))

	var rec recorder
	resp, err := client.CreateChatCompletion(rec.context(t.Context()),
		openai.ChatCompletionRequest{Model: "gpt-4o", Messages: hello()})
	require.NoError(t, err)
	assert.Equal(t, "Hello from swedencentral.", resp.Choices[0].Message.Content)
	assert.Equal(t, "swedencentral", resp.Header().Get("X-Ms-Region"), "the serving region's headers reach the caller")
	assert.Equal(t, []string{"eastus", "westus", "swedencentral"}, rec.regions())
	first := rec.first()
	assert.Equal(t, http.StatusTooManyRequests, first.Status)
	assert.Equal(t, failover.OutcomeFailedOver, first.Outcome)
	var apiErr *openai.APIError
	require.ErrorAs(t, first.Err, &apiErr)
	assert.Contains(t, apiErr.Message, "exceeded token rate limit")
	assert.Equal(t, failover.OutcomeServed, rec.last().Outcome)
	for _, s := range servers {
		assert.Equal(t, 1, s.Requests(), s.Name)
	}
}

// TestFailoverWorthyAnswers checks every kind of answer that is a failure of the region, not of the request: each
// must move the request to the next region, which serves it.
func TestFailoverWorthyAnswers(t *testing.T) {
	retryableBadRequest := failovertest.BadRequest("try elsewhere")
	retryableBadRequest.Header = http.Header{"X-Should-Retry": {"true"}}
	cases := []struct {
		name   string
		reply  failovertest.Reply
		status int
	}{
		{"429 with retry-after", failovertest.RateLimited(10 * time.Second), 429},
		{"429 without retry-after", failovertest.RateLimited(0), 429},
		{"408", failovertest.RequestTimeout(), 408},
		{"500", failovertest.InternalError(), 500},
		{"502 without a body", failovertest.Reply{Status: 502, Body: " "}, 502},
		{"503", failovertest.Unavailable(), 503},
		{"504", failovertest.Reply{Status: 504}, 504},
		{"401 wrong key in one region", failovertest.Unauthorized(), 401},
		{"403", failovertest.Reply{Status: 403}, 403},
		{"404 deployment not found", failovertest.DeploymentNotFound(), 404},
		{"409", failovertest.Reply{Status: 409}, 409},
		{"connection reset", failovertest.Disconnect(), 0},
		{"200 that is not JSON", failovertest.Malformed(), 200},
		{"200 with an empty body", failovertest.Reply{Body: "\n"}, 200},
		{"400 with x-should-retry: true", retryableBadRequest, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			servers[0].Script(tc.reply)
			client := newClient(t, regionsOf(servers...))

			var rec recorder
			content, err := client.ChatCompletion(rec.context(t.Context()), hello())
			require.NoError(t, err)
			assert.Equal(t, "Hello from westus.", content)
			assert.Equal(t, []string{"eastus", "westus"}, rec.regions())
			first := rec.first()
			assert.Equal(t, tc.status, first.Status)
			assert.Equal(t, failover.OutcomeFailedOver, first.Outcome)
			assert.Error(t, first.Err)
			assert.Equal(t, 1, servers[1].Requests())
		})
	}
}

// TestRequestErrorsAreNotFailedOver checks answers that every region would give again: they return at once, as
// go-openai would return them, and no other region is asked.
func TestRequestErrorsAreNotFailedOver(t *testing.T) {
	final500 := failovertest.InternalError()
	final500.Header = http.Header{"X-Should-Retry": {"false"}}
	cases := []struct {
		name   string
		reply  failovertest.Reply
		status int
		code   any
	}{
		{"invalid request", failovertest.BadRequest("'messages' must contain at least one message"), 400, 0},
		{"content filter", failovertest.ContentFilter(), 400, "content_filter"},
		{"context length", failovertest.ContextLengthExceeded(), 400, "context_length_exceeded"},
		{"422", failovertest.Reply{Status: 422}, 422, "422"},
		{"500 with x-should-retry: false", final500, 500, 0}, // go-openai decodes "code":null as 0
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			servers[0].Script(tc.reply)
			client := newClient(t, regionsOf(servers...))

			var rec recorder
			_, err := client.ChatCompletion(rec.context(t.Context()), hello())
			require.Error(t, err)
			assert.NotErrorIs(t, err, failover.ErrExhausted)
			var apiErr *openai.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tc.status, apiErr.HTTPStatusCode)
			assert.Equal(t, tc.code, apiErr.Code)
			assert.Zero(t, servers[1].Requests(), "a request error must not be sent to another region")
			assert.Equal(t, []string{"eastus"}, rec.regions())
			assert.Equal(t, failover.OutcomeReturned, rec.first().Outcome)
		})
	}
}

func TestOpenAIFallbackServesWhenEveryRegionIsOut(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].SetDefault(failovertest.RateLimited(time.Minute))
	servers[1].SetDefault(failovertest.Unavailable())
	oai := failovertest.NewOpenAI()
	t.Cleanup(oai.Close)
	client := newClient(t, regionsOf(servers...), failover.WithOpenAIFallback(oai.Key, oai.URL))

	var rec recorder
	content, err := client.ChatCompletion(rec.context(t.Context()), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from openai.", content)
	assert.Equal(t, []string{"eastus", "westus", failover.OpenAIFallbackName}, rec.regions())
	calls := oai.Calls()
	require.Len(t, calls, 1)
	assert.True(t, calls[0].Authorized, "the fallback must get its own key as a Bearer token")
	assert.Equal(t, "chat/completions", calls[0].Operation)
	assert.Equal(t, "gpt-4o", calls[0].Model, "the public API gets the model name, not a deployment")
}

func TestRegionsAreNotAskedWhenTheFallbackIsTheOnlyBackend(t *testing.T) {
	oai := failovertest.NewOpenAI()
	t.Cleanup(oai.Close)
	client := newClient(t, nil, failover.WithOpenAIFallback(oai.Key, oai.URL))
	content, err := client.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from openai.", content)
}

// TestExhaustedListsEveryAttempt also covers a fallback that is out of credit: waiting would not help it, but
// the error is still an exhaustion that keeps the regions' attempts.
func TestExhaustedListsEveryAttempt(t *testing.T) {
	for _, fallback := range []struct {
		reply  failovertest.Reply
		status int
		typ    string
	}{
		{failovertest.Unavailable(), 503, ""},
		{failovertest.InsufficientQuota(), 429, "insufficient_quota"},
	} {
		t.Run(fmt.Sprint(fallback.status), func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			servers[0].SetDefault(failovertest.RateLimited(time.Minute))
			servers[1].SetDefault(failovertest.InternalError())
			oai := failovertest.NewOpenAI()
			t.Cleanup(oai.Close)
			oai.SetDefault(fallback.reply)
			client := newClient(t, regionsOf(servers...), failover.WithOpenAIFallback(oai.Key, oai.URL), failover.WithMaxWait(0))

			_, err := client.ChatCompletion(t.Context(), hello())
			require.ErrorIs(t, err, failover.ErrExhausted)
			var exhausted *failover.ExhaustedError
			require.ErrorAs(t, err, &exhausted)
			require.Len(t, exhausted.Attempts, 3)
			for i, want := range []struct {
				region string
				status int
			}{{"eastus", 429}, {"westus", 500}, {"openai", fallback.status}} {
				a := exhausted.Attempts[i]
				assert.Equal(t, want.region, a.Region)
				assert.Equal(t, want.status, a.Status)
				assert.Equal(t, failover.OutcomeFailedOver, a.Outcome)
				assert.Contains(t, err.Error(), a.Region+": ", "the message names every attempt")
			}
			var apiErr *openai.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, fallback.status, apiErr.HTTPStatusCode, "errors.As reaches the latest attempt's API error")
			assert.Equal(t, fallback.typ, apiErr.Type)
		})
	}
}

func TestExhaustedReachesTheLastAPIErrorPastATransportError(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].SetDefault(failovertest.RateLimited(time.Minute))
	servers[1].SetDefault(failovertest.Disconnect())
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))

	_, err := client.ChatCompletion(t.Context(), hello())
	require.ErrorIs(t, err, failover.ErrExhausted)
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 429, apiErr.HTTPStatusCode)
}

// A transport error's URL (host, deployment, api-version) stays out of the one-line summaries, which a gateway
// shows its callers; errors.As still reaches it.
func TestTransportErrorsAreSummarisedWithoutTheirURL(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	servers[0].SetDefault(failovertest.Disconnect())
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))

	_, err := client.ChatCompletion(t.Context(), hello())
	require.ErrorIs(t, err, failover.ErrExhausted)
	host := strings.TrimPrefix(servers[0].URL, "http://")
	assert.NotContains(t, err.Error(), host)
	assert.NotContains(t, err.Error(), "/openai/deployments/")
	assert.Contains(t, err.Error(), "eastus: failed over")
	assert.Contains(t, err.Error(), "Post: ", "the operation and the cause remain")
	var urlErr *url.Error
	require.ErrorAs(t, err, &urlErr)
	assert.Contains(t, urlErr.URL, host)
}

func TestCancellationStopsTheSequence(t *testing.T) {
	arrived := make(chan struct{}, 1)
	eastus := failovertest.NewRegion("eastus", failovertest.WithOnRequest(func(failovertest.Call) { arrived <- struct{}{} }))
	t.Cleanup(eastus.Close)
	eastus.SetDefault(failovertest.Hang())
	westus := startRegions(t, []string{"westus"})[0]
	client := newClient(t, regionsOf(eastus, westus))

	ctx, cancel := context.WithCancel(t.Context())
	result := client.ChatCompletionAsync(ctx, hello())
	<-arrived
	cancel()
	r := <-result
	require.ErrorIs(t, r.Err, context.Canceled)
	assert.NotErrorIs(t, r.Err, failover.ErrExhausted)
	assert.Zero(t, westus.Requests(), "no region is tried after the context ends")
}

func TestDoneContextSendsNothing(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := client.ChatCompletion(ctx, hello())
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, servers[0].Requests())
}

func TestDeploymentsAndAPIVersionPerRegion(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	regions := regionsOf(servers...)
	regions[0].Deployments = map[string]string{"gpt-4o": "prod-gpt4o"}
	regions[0].APIVersion = "2025-04-01-preview"
	servers[0].Script(failovertest.RateLimited(time.Second))
	client := newClient(t, regions)

	_, err := client.ChatCompletion(t.Context(), hello())
	require.NoError(t, err)
	east, west := servers[0].Calls()[0], servers[1].Calls()[0]
	assert.Equal(t, "prod-gpt4o", east.Deployment)
	assert.Equal(t, "2025-04-01-preview", east.APIVersion)
	assert.True(t, east.Authorized)
	assert.Equal(t, "gpt-4o", west.Deployment, "without a mapping the deployment is the model's name")
	assert.Equal(t, failover.DefaultAPIVersion, west.APIVersion)
	assert.True(t, west.Authorized, "each region gets its own key")
}

func TestEndpointWithPathPrefix(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	// An API Management front end adds a path; here the fake does not know it, so it answers 404 — which shows
	// the prefix was kept. A wrong path's 404 is the request's answer: it says nothing of the model.
	regions := regionsOf(servers...)
	regions[0].Endpoint += "/gateway/"
	client := newClient(t, regions)
	_, err := client.ChatCompletion(t.Context(), hello())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 404, apiErr.HTTPStatusCode)
	assert.Equal(t, 404, servers[0].Calls()[0].Status)
	h := client.Health()[0]
	assert.Equal(t, failover.StateServing, h.State, "a wrong path teaches nothing of the model")
	assert.Empty(t, h.Models, "a wrong path teaches nothing of the model")
}

func TestCreateChatCompletionUsesTheDefaultModelOnlyWhenNoneIsGiven(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))
	_, err := client.CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Messages: hello()})
	require.NoError(t, err)
	_, err = client.CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Model: "gpt-4o-mini", Messages: hello()})
	require.NoError(t, err)
	calls := servers[0].Calls()
	assert.Equal(t, "gpt-4o", calls[0].Model)
	assert.Equal(t, "gpt-4o-mini", calls[1].Model)

	bare, err := failover.New(regionsOf(servers...))
	require.NoError(t, err)
	t.Cleanup(bare.CloseIdleConnections)
	_, err = bare.ChatCompletion(t.Context(), hello())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "FAILOVER_MODEL")
	assert.Equal(t, 2, servers[0].Requests(), "a request without a model is not sent")
}

func TestTemperatureIsSentEvenWhenZero(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	for _, temp := range []float32{0, 0.7} {
		client := newClient(t, regionsOf(servers...), failover.WithTemperature(temp))
		_, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
	}
	calls := servers[0].Calls()
	assert.Contains(t, string(calls[0].Body), `"temperature":1e-45`, "0 is sent as the smallest float, go-openai's way to send 0")
	assert.Contains(t, string(calls[1].Body), `"temperature":0.7`)
}

// TestDoServesGoOpenAIClients uses the failover client as the HTTP doer of a plain go-openai client: chat,
// streaming and embeddings all fail over.
func TestDoServesGoOpenAIClients(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	client := newClient(t, regionsOf(servers...))
	cfg := openai.DefaultConfig("")
	cfg.BaseURL = "https://ignored.example/v1"
	cfg.HTTPClient = client
	api := openai.NewClientWithConfig(cfg)

	t.Run("chat", func(t *testing.T) {
		servers[0].Script(failovertest.RateLimited(time.Second))
		resp, err := api.CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Model: "gpt-4o", Messages: hello()})
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", resp.Choices[0].Message.Content)
	})
	t.Run("stream", func(t *testing.T) {
		servers[0].Script(failovertest.InternalError())
		stream, err := api.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Model: "gpt-4o", Messages: hello()})
		require.NoError(t, err)
		defer stream.Close()
		text, err := failovertest.ReadStream(stream)
		require.NoError(t, err, "the stream ends with io.EOF")
		assert.Equal(t, "Hello from westus.", text)
		assert.True(t, servers[1].Calls()[len(servers[1].Calls())-1].Stream)
	})
	t.Run("embeddings", func(t *testing.T) {
		servers[0].Script(failovertest.Unavailable())
		resp, err := api.CreateEmbeddings(t.Context(), openai.EmbeddingRequest{
			Model: openai.SmallEmbedding3, Input: []string{"one", "two"}})
		require.NoError(t, err)
		require.Len(t, resp.Data, 2)
		assert.Len(t, resp.Data[0].Embedding, 8)
		last := servers[1].Calls()[len(servers[1].Calls())-1]
		assert.Equal(t, "embeddings", last.Operation)
		assert.Equal(t, string(openai.SmallEmbedding3), last.Deployment)
	})
	t.Run("models, from the configuration", func(t *testing.T) {
		before := servers[0].Requests()
		models, err := api.ListModels(t.Context())
		require.NoError(t, err)
		var ids []string
		for _, m := range models.Models {
			ids = append(ids, m.ID)
		}
		assert.Empty(t, ids, "no region declares its deployments (see TestModelListIsTheConfiguredModels)")
		assert.Equal(t, before, servers[0].Requests(), "no region is asked")
	})
	t.Run("unsupported operation", func(t *testing.T) {
		before := servers[0].Requests()
		_, err := api.RetrieveFineTuningJob(t.Context(), "ftjob-1")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "cannot route")
		assert.Equal(t, before, servers[0].Requests())
	})
}

func TestDoDropsTheCallersCredentials(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	servers[0].Script(failovertest.Unavailable())
	oai := failovertest.NewOpenAI()
	t.Cleanup(oai.Close)
	client := newClient(t, regionsOf(servers...), failover.WithOpenAIFallback(oai.Key, oai.URL))
	cfg := openai.DefaultConfig("sk-caller-token-must-not-travel")
	cfg.HTTPClient = client
	_, err := openai.NewClientWithConfig(cfg).CreateChatCompletion(t.Context(),
		openai.ChatCompletionRequest{Model: "gpt-4o", Messages: hello()})
	require.NoError(t, err)
	assert.True(t, servers[0].Calls()[0].Authorized)
	assert.Empty(t, servers[0].Calls()[0].Header.Get("Authorization"), "the caller's token is not sent to a region")
	// The fake OpenAI accepts exactly "Bearer <its key>": the caller's Authorization header was replaced.
	assert.True(t, oai.Calls()[0].Authorized)
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	thief := startRegions(t, []string{"thief"})[0]
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.Reply{Status: http.StatusTemporaryRedirect, Header: http.Header{
		"Location": {thief.URL + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"}}})
	for _, custom := range []bool{false, true} {
		var opts []failover.Option
		if custom {
			// A caller's client that follows redirects is overridden.
			opts = append(opts, failover.WithHTTPClient(&http.Client{}))
		}
		client := newClient(t, regionsOf(servers...), opts...)
		var rec recorder
		content, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", content)
		assert.Equal(t, 307, rec.first().Status)
		servers[0].Script(failovertest.Reply{Status: http.StatusTemporaryRedirect, Header: http.Header{
			"Location": {thief.URL + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"}}})
	}
	assert.Zero(t, thief.Requests(), "the api-key must not follow a redirect")
}

func TestDoAnswersRequestsItCannotRoute(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))
	cases := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"no body", "/v1/chat/completions", "", http.StatusBadRequest, "has no body"},
		{"no model", "/v1/chat/completions", `{"messages":[]}`, http.StatusBadRequest, "names no model"},
		{"not JSON", "/v1/embeddings", `model=gpt-4o`, http.StatusBadRequest, "names no model"},
		{"other operation", "/v1/fine_tuning/jobs", `{"model":"gpt-4o"}`, http.StatusNotFound, "cannot route POST /v1/fine_tuning/jobs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = http.NoBody
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://ignored.example"+tc.path, body)
			require.NoError(t, err)
			resp, err := client.Do(req)
			require.NoError(t, err, "only the context's end is an error")
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, "false", resp.Header.Get("X-Should-Retry"), "an SDK must not send it again")
			assert.Same(t, req, resp.Request)
			assert.Contains(t, readAll(t, resp), tc.want)
		})
	}
	assert.Zero(t, servers[0].Requests())
}

func TestModelNamesThatNeedEscaping(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))
	for _, model := range []string{"ft:gpt-4o-mini:my-org::abc123", "gpt 4o"} {
		_, err := client.CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Model: model, Messages: hello()})
		require.NoError(t, err, model)
		calls := servers[0].Calls()
		assert.Equal(t, model, calls[len(calls)-1].Deployment, "the deployment arrives intact")
	}
}

func TestStreamThatStallsBeforeItsFirstByteFailsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithAttemptTimeout(10*time.Second))
		servers[0].Script(failovertest.Reply{BodyDelay: time.Hour}) // 200 and headers at once, then nothing

		var rec recorder
		start := time.Now()
		assert.Equal(t, "Hello from westus.", streamText(rec.context(t.Context()), t, client))
		assert.Equal(t, 10*time.Second, time.Since(start))
		require.Len(t, rec.attempts, 2)
		assert.Equal(t, 200, rec.attempts[0].Status)
		assert.ErrorIs(t, rec.attempts[0].Err, failover.ErrAttemptTimeout)
	})
}

func TestStreamThatEndsBeforeItsFirstByteFailsOver(t *testing.T) {
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK) // and no body at all
	}))
	t.Cleanup(empty.Close)
	westus := startRegions(t, []string{"westus"})[0]
	client := newClient(t, append([]failover.Region{{Name: "empty", Endpoint: empty.URL, APIKey: "k"}}, regionsOf(westus)...))

	var rec recorder
	assert.Equal(t, "Hello from westus.", streamText(rec.context(t.Context()), t, client))
	assert.ErrorContains(t, rec.first().Err, "stream ended before any content")
}

func TestCallerCredentialsAreDroppedHoweverSpelled(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://ignored.example/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	req.Header["api-key"] = []string{"caller-key"}
	req.Header["authorization"] = []string{"Bearer caller-token"}
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	h := servers[0].Calls()[0].Header
	for k, v := range h {
		assert.NotContains(t, strings.Join(v, ","), "caller", k)
	}
	assert.True(t, servers[0].Calls()[0].Authorized)
}

func TestBodyIsReplayedForEveryAttempt(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus", "swedencentral"})
	servers[0].Script(failovertest.RateLimited(time.Second))
	servers[1].Script(failovertest.InternalError())
	client := newClient(t, regionsOf(servers...))
	const body = `{"messages":[{"role":"user","content":"replay me"}],"model":"gpt-4o","n":1}`
	for _, replayable := range []bool{true, false} {
		var reader io.Reader = strings.NewReader(body) // http.NewRequest gives it a GetBody
		if !replayable {
			reader = struct{ io.Reader }{strings.NewReader(body)} // no GetBody: the engine keeps a copy
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://ignored.example/v1/chat/completions", reader)
		require.NoError(t, err)
		assert.Equal(t, replayable, req.GetBody != nil)
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		for _, s := range servers {
			calls := s.Calls()
			assert.Equal(t, body, string(calls[len(calls)-1].Body), s.Name)
			assert.Equal(t, "gpt-4o", calls[len(calls)-1].Deployment, "the model is found after other fields too")
		}
		servers[0].Script(failovertest.RateLimited(time.Second))
		servers[1].Script(failovertest.InternalError())
	}
}

func TestAnswerBodyIsEmptyAfterClose(t *testing.T) {
	servers := startRegions(t, []string{"eastus"}, failovertest.WithEcho())
	client := newClient(t, regionsOf(servers...))
	send := func(content string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://ignored.example/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"`+content+`"}]}`))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		return resp
	}
	first := send("first")
	head := make([]byte, 10)
	_, err := io.ReadFull(first.Body, head)
	require.NoError(t, err)
	require.NoError(t, first.Body.Close())
	require.NoError(t, first.Body.Close(), "closing twice is harmless")
	// The first answer's buffer is recycled for the second; the first body must not show its bytes.
	second := send("second")
	defer second.Body.Close()
	rest, err := io.ReadAll(first.Body)
	require.NoError(t, err)
	assert.Empty(t, rest)
	all, err := io.ReadAll(second.Body)
	require.NoError(t, err)
	assert.Contains(t, string(all), `"content":"second"`)
}
