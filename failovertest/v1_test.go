package failovertest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// v1Client is the stock go-openai client pointed at a region's v1 surface, as the surface is meant to be used: the
// base URL alone, and the key sent as a Bearer token.
func v1Client(t *testing.T, s *failovertest.Server, key string) *openai.Client {
	cfg := openai.DefaultConfig(key)
	cfg.BaseURL = s.V1URL
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	cfg.HTTPClient = &http.Client{Transport: transport}
	return openai.NewClientWithConfig(cfg)
}

// v1Chat is the body of a v1 chat completion for deployment.
func v1Chat(deployment string) string {
	return `{"model":"` + deployment + `","messages":[{"role":"user","content":"Hi there"}]}`
}

const resourceNotFound = `{"error":{"code":"404","message":"Resource not found"}}`

func TestRegionServesV1(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	assert.Equal(t, s.URL+"/openai/v1", s.V1URL)
	resp, err := v1Client(t, s, s.Key).CreateChatCompletion(t.Context(), chat())
	require.NoError(t, err)
	assert.Equal(t, "Hello from eastus.", resp.Choices[0].Message.Content)
	assert.Equal(t, "gpt-4o", resp.Model)
	require.Len(t, resp.PromptFilterResults, 1, "Azure's content filter results come on the v1 surface too")
	assert.Equal(t, "eastus", resp.Header().Get("X-Ms-Region"))
	assert.Equal(t, "99000", resp.Header().Get("X-Ratelimit-Remaining-Tokens"))

	calls := s.Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, failovertest.Call{Operation: "chat/completions", Deployment: "gpt-4o", Model: "gpt-4o", V1: true,
		Authorized: true, Status: 200, Time: calls[0].Time, Body: calls[0].Body, Header: calls[0].Header}, calls[0])
	assert.Equal(t, "Bearer "+s.Key, calls[0].Header.Get("Authorization"))

	openAI := failovertest.NewOpenAI()
	defer openAI.Close()
	assert.Empty(t, openAI.V1URL, "the public OpenAI API has no Azure v1 surface")
}

func TestRegionServesEveryOperationOnV1(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	client := v1Client(t, s, s.Key)
	resp, err := client.CreateEmbeddings(t.Context(), openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: []string{"a", "b"}})
	require.NoError(t, err)
	require.Len(t, resp.Data, 2)
	classic, err := azureClient(t, s, s.Key).CreateEmbeddings(t.Context(), openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: "b"})
	require.NoError(t, err)
	assert.Equal(t, classic.Data[0].Embedding, resp.Data[1].Embedding, "the same input gets the same vector on either surface")

	completion, err := client.CreateCompletion(t.Context(), openai.CompletionRequest{Model: "gpt-35-turbo-instruct", Prompt: "Say hi"})
	require.NoError(t, err)
	assert.Equal(t, "Hello from eastus.", completion.Choices[0].Text)

	calls := s.Calls()
	require.Len(t, calls, 3)
	for i, want := range []struct {
		operation, deployment string
		v1                    bool
	}{{"embeddings", "text-embedding-3-small", true}, {"embeddings", "text-embedding-3-small", false},
		{"completions", "gpt-35-turbo-instruct", true}} {
		assert.Equal(t, want.operation, calls[i].Operation, "call %d", i)
		assert.Equal(t, want.deployment, calls[i].Deployment, "call %d", i)
		assert.Equal(t, want.v1, calls[i].V1, "call %d", i)
	}
}

func TestRegionStreamsOnV1(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	s.Script(failovertest.OK("one two three"), failovertest.Reply{Content: "one two three", StreamCutAfter: 1})
	client := v1Client(t, s, s.Key)
	stream, err := client.CreateChatCompletionStream(t.Context(), chat())
	require.NoError(t, err)
	text, err := failovertest.ReadStream(stream)
	stream.Close()
	require.NoError(t, err)
	assert.Equal(t, "one two three", text)

	stream, err = client.CreateChatCompletionStream(t.Context(), chat())
	require.NoError(t, err)
	text, err = failovertest.ReadStream(stream)
	stream.Close()
	assert.Error(t, err, "a scripted cut applies on the v1 surface too")
	assert.Equal(t, "one ", text)

	calls := s.Calls()
	require.Len(t, calls, 2)
	assert.True(t, calls[0].Stream)
	assert.True(t, calls[0].V1)
	assert.Equal(t, "gpt-4o", calls[0].Deployment)
}

func TestV1Credentials(t *testing.T) {
	s := failovertest.NewRegion("eastus", failovertest.WithKey("right"))
	defer s.Close()
	for _, c := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"api-key", http.Header{"Api-Key": {"right"}}, 200},
		{"key as a Bearer token", http.Header{"Authorization": {"Bearer right"}}, 200},
		{"wrong api-key", http.Header{"Api-Key": {"wrong"}}, 401},
		{"wrong Bearer key", http.Header{"Authorization": {"Bearer wrong"}}, 401},
		{"key without Bearer", http.Header{"Authorization": {"right"}}, 401},
		{"none", http.Header{}, 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := post(t, s.V1URL+"/chat/completions", c.header, v1Chat("gpt-4o"))
			assert.Equal(t, c.status, resp.StatusCode, body)
			if c.status == 401 {
				assert.JSONEq(t, failovertest.Unauthorized().Body, body, "the classic surface's 401")
			}
			calls := s.Calls()
			assert.Equal(t, c.status == 200, calls[len(calls)-1].Authorized)
		})
	}

	resp, _ := post(t, s.URL+"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
		http.Header{"Authorization": {"Bearer right"}}, v1Chat("gpt-4o"))
	assert.Equal(t, 401, resp.StatusCode, "the classic surface takes the key in api-key only")
}

func TestV1TakesEntraTokens(t *testing.T) {
	id := failovertest.NewIdentity(nil)
	defer id.Close()
	s := failovertest.NewRegion("eastus", failovertest.WithEntraID(id), failovertest.WithKey("nobody-sends-this"))
	defer s.Close()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet,
		id.URL+"?api-version=2019-08-01&resource="+url.QueryEscape("https://cognitiveservices.azure.com"), nil)
	require.NoError(t, err)
	req.Header.Set("X-IDENTITY-HEADER", id.Header)
	tokenResp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var token struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.NewDecoder(tokenResp.Body).Decode(&token))
	tokenResp.Body.Close()
	require.NotEmpty(t, token.AccessToken)

	resp, body := post(t, s.V1URL+"/chat/completions", http.Header{"Authorization": {"Bearer " + token.AccessToken}}, v1Chat("gpt-4o"))
	assert.Equal(t, 200, resp.StatusCode, body)
	id.Revoke(token.AccessToken)
	resp, body = post(t, s.V1URL+"/chat/completions", http.Header{"Authorization": {"Bearer " + token.AccessToken}}, v1Chat("gpt-4o"))
	assert.Equal(t, 401, resp.StatusCode)
	assert.JSONEq(t, failovertest.EntraUnauthorized().Body, body, "a region that takes tokens answers a token's 401")
}

func TestV1APIVersion(t *testing.T) {
	s := failovertest.NewRegion("eastus", failovertest.WithKey("right"))
	defer s.Close()
	key := http.Header{"Api-Key": {"right"}}
	for _, version := range []string{"", "v1", "preview"} {
		u := s.V1URL + "/chat/completions"
		if version != "" {
			u += "?api-version=" + version
		}
		resp, body := post(t, u, key, v1Chat("gpt-4o"))
		assert.Equal(t, 200, resp.StatusCode, "api-version %q: %s", version, body)
	}

	resp, body := post(t, s.V1URL+"/chat/completions?api-version=2024-10-21", key, v1Chat("gpt-4o"))
	assert.Equal(t, 400, resp.StatusCode)
	assert.JSONEq(t, `{"error":{"code":"BadRequest","message":"API version not supported"}}`, body)
	assert.Equal(t, "eastus", resp.Header.Get("X-Ms-Region"))
	calls := s.Calls()
	assert.Equal(t, "2024-10-21", calls[len(calls)-1].APIVersion)
	assert.Equal(t, "preview", calls[2].APIVersion)

	// The order of the checks: credentials before the api-version, the api-version before the body.
	resp, _ = post(t, s.V1URL+"/chat/completions?api-version=2024-10-21", http.Header{"Api-Key": {"wrong"}}, v1Chat("gpt-4o"))
	assert.Equal(t, 401, resp.StatusCode)
	resp, body = post(t, s.V1URL+"/chat/completions?api-version=2024-10-21", key, `{not json`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, body, "API version not supported")
	resp, body = post(t, s.V1URL+"/chat/completions", key, `{not json`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, body, "could not parse the JSON body")
}

func TestV1MissingDeployment(t *testing.T) {
	s := failovertest.NewRegion("eastus", failovertest.WithDeployments("gpt-4o"))
	defer s.Close()
	key := http.Header{"Api-Key": {s.Key}}
	const message = "Could not find an existing deployment to match the model in the request."

	resp, body := post(t, s.V1URL+"/chat/completions", key, v1Chat("gpt-4.1"))
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "true", resp.Header.Get("X-Ms-Fe-Error"))
	assert.Equal(t, "eastus", resp.Header.Get("X-Ms-Region"))
	assert.JSONEq(t, failovertest.V1DeploymentNotFound().Body, body)
	assert.Contains(t, body, message)
	assert.NotContains(t, body, "DeploymentNotFound", "the v1 surface does not answer the classic code")
	calls := s.Calls()
	assert.Equal(t, "gpt-4.1", calls[0].Deployment)
	assert.Equal(t, 400, calls[0].Status)

	resp, body = post(t, s.V1URL+"/chat/completions", key, `{"messages":[{"role":"user","content":"Hi"}]}`)
	assert.Equal(t, 400, resp.StatusCode, "a body without a model matches no deployment")
	assert.Contains(t, body, message)

	resp, body = post(t, s.URL+"/openai/deployments/gpt-4.1/chat/completions?api-version=2024-10-21", key, v1Chat("gpt-4.1"))
	assert.Equal(t, 404, resp.StatusCode, "the classic surface answers the same gap with DeploymentNotFound")
	assert.JSONEq(t, failovertest.DeploymentNotFound().Body, body)
	assert.Empty(t, resp.Header.Get("X-Ms-Fe-Error"))

	req := chat()
	req.Model = "gpt-4.1"
	_, err := v1Client(t, s, s.Key).CreateChatCompletion(t.Context(), req)
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 400, apiErr.HTTPStatusCode)
	assert.Equal(t, "invalid_request_error", apiErr.Type)
	assert.True(t, strings.HasPrefix(apiErr.Message, message), apiErr.Message)

	// The 404 variant Azure has also been seen to answer, scripted for a deployment that exists.
	r := failovertest.V1DeploymentNotFound()
	r.Status = http.StatusNotFound
	s.Script(r)
	resp, body = post(t, s.V1URL+"/chat/completions", key, v1Chat("gpt-4o"))
	assert.Equal(t, 404, resp.StatusCode)
	assert.Equal(t, "true", resp.Header.Get("X-Ms-Fe-Error"))
	assert.Contains(t, body, message)
}

func TestV1UnknownPaths(t *testing.T) {
	s := failovertest.NewRegion("eastus", failovertest.WithKey("right"))
	defer s.Close()
	key := http.Header{"Api-Key": {"right"}}
	for _, path := range []string{"/files", "/models", "/chat/completions/", "/deployments/gpt-4o/chat/completions", ""} {
		resp, body := post(t, s.V1URL+path, key, v1Chat("gpt-4o"))
		assert.Equal(t, 404, resp.StatusCode, path)
		assert.JSONEq(t, resourceNotFound, body, path)
	}
	resp, _ := post(t, s.V1URL+"/files", http.Header{"Api-Key": {"wrong"}}, v1Chat("gpt-4o"))
	assert.Equal(t, 404, resp.StatusCode, "the path is checked before the credentials")

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.V1URL+"/chat/completions", nil)
	require.NoError(t, err)
	req.Header = key
	get, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	get.Body.Close()
	assert.Equal(t, 404, get.StatusCode, "only POST is served")
	assert.Equal(t, map[int]int{404: 7}, s.Statuses())
}

// A script, the default and a replier serve both surfaces, and the replier sees which one a request came by.
func TestScriptsServeBothSurfaces(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	s.Script(failovertest.OK("scripted"))
	s.SetReplier(func(c failovertest.Call) failovertest.Reply {
		if c.V1 {
			return failovertest.RateLimited(0)
		}
		return failovertest.OK("classic " + c.Deployment)
	})
	resp, err := v1Client(t, s, s.Key).CreateChatCompletion(t.Context(), chat())
	require.NoError(t, err)
	assert.Equal(t, "scripted", resp.Choices[0].Message.Content, "the script's first reply goes to whichever surface asks first")

	_, err = v1Client(t, s, s.Key).CreateChatCompletion(t.Context(), chat())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 429, apiErr.HTTPStatusCode)
	resp, err = azureClient(t, s, s.Key).CreateChatCompletion(t.Context(), chat())
	require.NoError(t, err)
	assert.Equal(t, "classic gpt-4o", resp.Choices[0].Message.Content)
}

// postV1 sends body to the region's v1 chat completions with its key in api-key, over the network.
func (f *quotaFixture) postV1(t *testing.T, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.region.V1URL+"/chat/completions", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Api-Key", f.region.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.network.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(data)
}

// A deployment has one quota whichever surface reaches it.
func TestQuotaIsSharedBetweenSurfaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newQuotaFixture(t, failovertest.Quota{RequestsPerMinute: 2, TokensPerMinute: 1000})
		resp, body := f.post(t, "gpt-4o", chatBody(100)) // 105 tokens
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		resp, body = f.postV1(t, chatBody(100))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		requests, tokens := remaining(resp.Header)
		assert.Equal(t, "0", requests, "the classic request counts against the v1 one")
		assert.Equal(t, "790", tokens)

		resp, _ = f.postV1(t, chatBody(100))
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		assert.Equal(t, "2", resp.Header.Get("X-Ratelimit-Limit-Requests"))
		resp, _ = f.post(t, "gpt-4o", chatBody(100))
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

		resp, body = f.postV1(t, strings.Replace(chatBody(100), "gpt-4o", "gpt-4.1", 1))
		assert.Equal(t, http.StatusOK, resp.StatusCode, "another deployment has its own quota: %s", body)
		assert.Equal(t, map[int]int{200: 3, 429: 2}, f.region.Statuses())
	})
}
