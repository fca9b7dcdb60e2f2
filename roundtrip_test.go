package failover_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// transportClient is a plain *http.Client whose transport is the failover client, as an SDK is given it.
func transportClient(c *failover.Client) *http.Client { return &http.Client{Transport: c} }

// postChat sends a chat request for gpt-4o through hc to a base URL the failover client ignores.
func postChat(t *testing.T, ctx context.Context, hc *http.Client) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://caller.example/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer caller-key")
	return hc.Do(req)
}

// answerErrorBody decodes an answer's error body, in the shape Azure and OpenAI share.
func answerErrorBody(t *testing.T, resp *http.Response) (code, message string) {
	t.Helper()
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(readAll(t, resp)), &body))
	return body.Error.Code, body.Error.Message
}

// TestRoundTripAnswersWhenNoRegionServes: the Client as a transport never hands an SDK a bare error for a
// failure of the regions: it answers with the status the regions' state calls for, Retry-After where a retry can
// succeed, x-should-retry: false so the SDK does not run the pass again, and a body naming every region.
func TestRoundTripAnswersWhenNoRegionServes(t *testing.T) {
	cases := []struct {
		name       string
		reply      failovertest.Reply
		status     int
		code       string
		retryAfter bool
	}{
		{"throttled", failovertest.RateLimited(30 * time.Second), http.StatusTooManyRequests, "429", true},
		{"failing", failovertest.InternalError(), http.StatusServiceUnavailable, "503", true},
		{"credentials refused", failovertest.Unauthorized(), http.StatusBadGateway, "upstream_credentials_refused", false},
		{"no credit", failovertest.InsufficientQuota(), http.StatusBadGateway, "upstream_credentials_refused", false},
		{"model missing", failovertest.DeploymentNotFound(), http.StatusNotFound, "DeploymentNotFound", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			for _, s := range servers {
				s.SetDefault(tc.reply)
			}
			client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0), fixedBackoff(5*time.Second))
			resp, err := postChat(t, t.Context(), transportClient(client))
			require.NoError(t, err, "only the context's end is an error")
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, "false", resp.Header.Get("X-Should-Retry"))
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if tc.retryAfter {
				secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				require.NoError(t, err, "Retry-After in seconds")
				assert.Positive(t, secs)
				assert.NotEmpty(t, resp.Header.Get("Retry-After-Ms"))
			} else {
				assert.Empty(t, resp.Header.Get("Retry-After"))
			}
			code, message := answerErrorBody(t, resp)
			assert.Equal(t, tc.code, code)
			assert.Contains(t, message, "eastus")
			assert.Contains(t, message, "westus")
			for _, s := range servers {
				assert.Equal(t, 1, s.Requests(), "one pass")
				assert.NotContains(t, message, s.Key)
			}
			assert.NotContains(t, message, "caller-key")
		})
	}
}

// TestRoundTripPassesARegionsRefusalOn: a refusal of the request itself is the region's answer, as it came.
func TestRoundTripPassesARegionsRefusalOn(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.ContentFilter())
	client := newClient(t, regionsOf(servers...))
	resp, err := postChat(t, t.Context(), transportClient(client))
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, "eastus", resp.Header.Get("X-Ms-Region"))
	code, _ := answerErrorBody(t, resp)
	assert.Equal(t, "content_filter", code)
	assert.Zero(t, servers[1].Requests())
}

// TestRoundTripErrsOnlyWhenTheContextEnds: a canceled request is the one error RoundTrip returns.
func TestRoundTripErrsOnlyWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	// The caller gives up once the request has reached the region, which never answers.
	servers := startRegions(t, []string{"eastus"}, failovertest.WithOnRequest(func(failovertest.Call) { cancel() }))
	servers[0].SetDefault(failovertest.Hang())
	client := newClient(t, regionsOf(servers...))
	resp, err := postChat(t, ctx, transportClient(client))
	assert.Nil(t, resp)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, servers[0].Requests())
}

// closeRecorder is a request body that records whether it was closed.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// TestRoundTripClosesTheRequestBody, as http.RoundTripper requires, whether or not the request is sent.
func TestRoundTripClosesTheRequestBody(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))
	for _, path := range []string{"/v1/chat/completions", "/v1/files"} {
		body := &closeRecorder{Reader: strings.NewReader(`{"model":"gpt-4o","messages":[]}`)}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://caller.example"+path, body)
		require.NoError(t, err)
		resp, err := client.RoundTrip(req)
		require.NoError(t, err)
		readAll(t, resp)
		assert.True(t, body.closed, path)
	}
}

// TestGoOpenAIOverTheTransportSeesAStatus: an SDK given the Client as its transport sees an *openai.APIError with
// the status, not a connection error, when every region is throttled.
func TestGoOpenAIOverTheTransportSeesAStatus(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	for _, s := range servers {
		s.SetDefault(failovertest.RateLimited(30 * time.Second))
	}
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	cfg := openai.DefaultAzureConfig("caller-key", "https://caller.openai.azure.com")
	cfg.HTTPClient = transportClient(client)
	_, err := openai.NewClientWithConfig(cfg).CreateChatCompletion(t.Context(), chatRequest())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusTooManyRequests, apiErr.HTTPStatusCode)
	assert.True(t, strings.HasPrefix(apiErr.Message, failover.ErrExhausted.Error()), apiErr.Message)
	assert.False(t, errors.Is(err, failover.ErrExhausted), "over HTTP the SDK sees the answer, not the Go error")
}
