package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestChatFailsOverInBothModes(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{})
			f.regions[0].Script(failovertest.RateLimited(30 * time.Second))
			api := mode.api(f.url, gatewayKey)

			resp, err := api.CreateChatCompletion(t.Context(), chatRequest())
			require.NoError(t, err)
			assert.Equal(t, "Hello from westus.", resp.Choices[0].Message.Content)
			h := resp.Header()
			assert.Equal(t, "westus", h.Get("X-Failover-Region"))
			assert.Equal(t, "2", h.Get("X-Failover-Attempts"))
			assert.Equal(t, "99000", h.Get("X-Ratelimit-Remaining-Tokens"), "upstream rate-limit headers pass through")
			assert.NotEmpty(t, h.Get("Apim-Request-Id"))

			// eastus rests 30 s: the next request goes straight to westus.
			resp, err = api.CreateChatCompletion(t.Context(), chatRequest())
			require.NoError(t, err)
			assert.Equal(t, "1", resp.Header().Get("X-Failover-Attempts"))
			assert.Equal(t, 1, f.regions[0].Requests())

			calls := f.regions[1].Calls()
			require.Len(t, calls, 2)
			assert.Equal(t, "chat-westus", calls[0].Deployment, "the region's own deployment for the model")
			assert.Equal(t, "2024-10-21", calls[0].APIVersion, "the region's api-version, not the caller's")
			assert.True(t, calls[0].Authorized, "the region's own key")
			noKeyUpstream(t, f)
		})
	}
}

func TestStreamInBothModes(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{})
			f.regions[0].Script(failovertest.StreamFailure(1)) // an error as the first event: fail over unseen
			api := mode.api(f.url, gatewayKey)

			req := chatRequest()
			req.Stream = true
			stream, err := api.CreateChatCompletionStream(t.Context(), req)
			require.NoError(t, err)
			defer stream.Close()
			assert.Equal(t, "westus", stream.Header().Get("X-Failover-Region"))
			assert.Equal(t, "2", stream.Header().Get("X-Failover-Attempts"))
			assert.Equal(t, "text/event-stream", stream.Header().Get("Content-Type"))
			assert.Equal(t, "Hello from westus.", streamText(t, stream))
			assert.True(t, f.regions[1].Calls()[0].Stream)
			noKeyUpstream(t, f)
		})
	}
}

func TestStreamCutBecomesAnErrorEvent(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			f := startFleet(t, []string{"eastus"}, gateway.Config{})
			f.regions[0].Script(failovertest.Reply{StreamCutAfter: 2})
			req := chatRequest()
			req.Stream = true
			stream, err := mode.api(f.url, gatewayKey).CreateChatCompletionStream(t.Context(), req)
			require.NoError(t, err)
			defer stream.Close()
			_, last := failovertest.ReadStream(stream)
			var apiErr *openai.APIError
			require.ErrorAs(t, last, &apiErr, "a cut stream must not look complete (io.EOF)")
			assert.Equal(t, "stream_cut", apiErr.Code)
			assert.Contains(t, apiErr.Message, "stream cut")
		})
	}
}

func TestEmbeddingsInBothModes(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{})
			f.regions[0].Script(failovertest.Unavailable())
			resp, err := mode.api(f.url, gatewayKey).CreateEmbeddings(t.Context(), openai.EmbeddingRequestStrings{
				Model: "text-embedding-3-small", Input: []string{"one", "two"}})
			require.NoError(t, err)
			require.Len(t, resp.Data, 2)
			assert.NotEmpty(t, resp.Data[1].Embedding)
			calls := f.regions[1].Calls()
			require.Len(t, calls, 1)
			assert.Equal(t, "embeddings", calls[0].Operation)
			assert.Equal(t, "embed-westus", calls[0].Deployment)
		})
	}
}

func TestBodiesPassThroughUntouched(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	// Fields nobody here knows of, in an order no encoder would choose, with odd spacing.
	body := `{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o",  "future_field":{"x":[1,2.50,"é"]},"stream":false}`
	resp, answer := post(t, f.url, "/v1/chat/completions", body, map[string]string{"Authorization": "Bearer " + gatewayKey})
	require.Equal(t, http.StatusOK, resp.StatusCode, answer)
	assert.Equal(t, body, string(f.regions[0].Calls()[0].Body))
}

// An Azure caller (curl, say) names the model only as the deployment in the path.
func TestAzurePathNamesTheModel(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	body := `{"messages":[{"role":"user","content":"hi"}]}`
	resp, answer := post(t, f.url, "/openai/deployments/gpt-4o/chat/completions?api-version=2099-01-01", body,
		map[string]string{"api-key": gatewayKey})
	require.Equal(t, http.StatusOK, resp.StatusCode, answer)
	call := f.regions[0].Calls()[0]
	assert.Equal(t, "chat-eastus", call.Deployment)
	assert.Equal(t, body, string(call.Body))
}

func TestAuthFailures(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{Keys: []string{"first-key-0001", gatewayKey}})
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		name   string
		header map[string]string
		status int
	}{
		{"no key", nil, http.StatusUnauthorized},
		{"wrong api-key", map[string]string{"api-key": "nope"}, http.StatusUnauthorized},
		{"wrong bearer", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"key as a prefix", map[string]string{"api-key": gatewayKey[:10]}, http.StatusUnauthorized},
		{"key with more", map[string]string{"api-key": gatewayKey + "x"}, http.StatusUnauthorized},
		{"basic auth", map[string]string{"Authorization": "Basic " + gatewayKey}, http.StatusUnauthorized},
		{"api-key", map[string]string{"api-key": gatewayKey}, http.StatusOK},
		{"second of two keys", map[string]string{"api-key": "first-key-0001"}, http.StatusOK},
		{"bearer", map[string]string{"Authorization": "Bearer " + gatewayKey}, http.StatusOK},
		{"bearer in lower case", map[string]string{"Authorization": "bearer " + gatewayKey}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.regions[0].Requests()
			resp, answer := post(t, f.url, "/v1/chat/completions", body, tc.header)
			assert.Equal(t, tc.status, resp.StatusCode, answer)
			if tc.status == http.StatusUnauthorized {
				assert.Equal(t, before, f.regions[0].Requests(), "nothing goes upstream")
				assert.Contains(t, answer, `"code":"401"`)
				assert.NotContains(t, answer, gatewayKey)
			}
		})
	}

	// go-openai sees the 401 as an *openai.APIError.
	_, err := modes[0].api(f.url, "wrong").CreateChatCompletion(t.Context(), chatRequest())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusUnauthorized, apiErr.HTTPStatusCode)

	// /status and /metrics need a key; /healthz does not.
	for _, path := range []string{"/status", "/metrics"} {
		req, _ := http.NewRequest(http.MethodGet, f.url+path, nil)
		resp, _ := do(t, req)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
	}
	req, _ := http.NewRequest(http.MethodGet, f.url+"/healthz", nil)
	resp, answer := do(t, req)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok\n", answer)
	noKeyUpstream(t, f)
}

func TestOversizedBodies(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{MaxBodyBytes: 1024})
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", 2000) + `"}]}`
	auth := map[string]string{"api-key": gatewayKey}

	// Declared length: refused before the body is read.
	resp, answer := post(t, f.url, "/v1/chat/completions", big, auth)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Contains(t, answer, "larger than 1024 bytes")

	// Chunked, with no length: refused once the limit is passed.
	req, err := http.NewRequest(http.MethodPost, f.url+"/v1/chat/completions", io.MultiReader(strings.NewReader(big)))
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	require.Zero(t, req.ContentLength, "unknown length: sent chunked")
	resp, answer = do(t, req)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Contains(t, answer, "larger than 1024 bytes")
	assert.Zero(t, f.regions[0].Requests(), "nothing goes upstream")

	// go-openai gets an APIError.
	req2 := chatRequest()
	req2.Messages[0].Content = strings.Repeat("b", 2000)
	_, err = modes[1].api(f.url, gatewayKey).CreateChatCompletion(t.Context(), req2)
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusRequestEntityTooLarge, apiErr.HTTPStatusCode)

	// Just under the limit goes through.
	small := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", 900) + `"}]}`
	resp, answer = post(t, f.url, "/v1/chat/completions", small, auth)
	assert.Equal(t, http.StatusOK, resp.StatusCode, answer)
}

func TestEveryRegionResting(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{})
			f.regions[0].Script(failovertest.RateLimited(30 * time.Second))
			f.regions[1].Script(failovertest.RateLimited(20 * time.Second))
			api := mode.api(f.url, gatewayKey)

			_, err := api.CreateChatCompletion(t.Context(), chatRequest())
			var apiErr *openai.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, http.StatusTooManyRequests, apiErr.HTTPStatusCode)
			assert.Contains(t, apiErr.Message, "no region could serve")

			// Both rest now: the gateway answers alone, with the soonest recovery.
			resp, answer := post(t, f.url, "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`,
				map[string]string{"api-key": gatewayKey})
			assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
			seconds, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			require.NoError(t, err)
			assert.True(t, seconds >= 19 && seconds <= 20, "Retry-After %d: westus comes back first, in 20 s", seconds)
			ms, err := strconv.Atoi(resp.Header.Get("Retry-After-Ms"))
			require.NoError(t, err)
			assert.InDelta(t, 20000, ms, 1500)
			var body struct {
				Error struct{ Code, Message string }
			}
			require.NoError(t, json.Unmarshal([]byte(answer), &body), answer)
			assert.Equal(t, "429", body.Error.Code)
			assert.Equal(t, 1, f.regions[0].Requests())
			assert.Equal(t, 1, f.regions[1].Requests())
		})
	}
}

func TestRefusalsPassThrough(t *testing.T) {
	f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{})
	f.regions[0].Script(failovertest.ContentFilter())
	_, err := modes[0].api(f.url, gatewayKey).CreateChatCompletion(t.Context(), chatRequest())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusBadRequest, apiErr.HTTPStatusCode)
	assert.Equal(t, "content_filter", apiErr.Code)
	assert.Zero(t, f.regions[1].Requests(), "a refusal of the request itself is not failed over")
}

func TestModelMissingEverywhere(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	resp, answer := post(t, f.url, "/openai/deployments/gpt-9/chat/completions", `{"messages":[]}`,
		map[string]string{"api-key": gatewayKey})
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, answer)
	assert.Contains(t, answer, "DeploymentNotFound")
	assert.Zero(t, f.regions[0].Requests(), "the region declares its deployments, and gpt-9 is not one")
}

func TestOnlyTheRoutesAreServed(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	auth := map[string]string{"api-key": gatewayKey}
	for _, path := range []string{
		"/", "/v1/models/gpt-4o", "/v1/chat/completions/x", "/openai/v1/fine_tuning/jobs", "/openai/v1/responses/", "/openai/v1/",
		"/openai/v1/chat/completions/x", "/openai/deployments/gpt-4o/responses", "/openai/deployments/../chat/completions",
		"/openai/deployments/a%2Fb/chat/completions", "/http://example.com/v1/chat/completions",
	} {
		resp, answer := post(t, f.url, path, `{"model":"gpt-4o"}`, auth)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", path, answer)
	}
	req, _ := http.NewRequest(http.MethodGet, f.url+"/v1/chat/completions", nil)
	req.Header.Set("api-key", gatewayKey)
	resp, _ := do(t, req)
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "POST", resp.Header.Get("Allow"))
	resp, answer := post(t, f.url, "/v1/chat/completions", `{"messages":[]}`, auth)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, answer, "names no model")
	assert.Zero(t, f.regions[0].Requests())
}

func TestStatus(t *testing.T) {
	f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{})
	f.regions[0].Script(failovertest.RateLimited(30 * time.Second))
	_, err := modes[1].api(f.url, gatewayKey).CreateChatCompletion(t.Context(), chatRequest())
	require.NoError(t, err)

	req, _ := http.NewRequest(http.MethodGet, f.url+"/status", nil)
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	resp, answer := do(t, req)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var status struct {
		Regions []struct {
			Region string
			State  string
			Models []struct{ Model, State, Reason string }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(answer), &status), answer)
	require.Len(t, status.Regions, 2)
	assert.Equal(t, "eastus", status.Regions[0].Region)
	require.Len(t, status.Regions[0].Models, 1, answer)
	assert.Equal(t, "gpt-4o", status.Regions[0].Models[0].Model)
	assert.Equal(t, "resting", status.Regions[0].Models[0].State)
	assert.Contains(t, status.Regions[0].Models[0].Reason, "429")
	assert.Empty(t, status.Regions[1].Models)
}

func TestMetrics(t *testing.T) {
	f := startFleet(t, []string{"eastus", "westus"}, gateway.Config{})
	f.regions[0].Script(failovertest.RateLimited(30 * time.Second))
	api := modes[0].api(f.url, gatewayKey)
	for range 3 {
		_, err := api.CreateChatCompletion(t.Context(), chatRequest())
		require.NoError(t, err)
	}
	_, err := api.CreateEmbeddings(t.Context(), openai.EmbeddingRequestStrings{Model: "text-embedding-3-small", Input: []string{"x"}})
	require.NoError(t, err)

	req, _ := http.NewRequest(http.MethodGet, f.url+"/metrics", nil)
	req.Header.Set("api-key", gatewayKey)
	resp, text := do(t, req)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4"))
	for _, line := range []string{
		`aoai_gateway_requests_total{api="azure",operation="chat/completions",status="200"} 3`,
		`aoai_gateway_requests_total{api="azure",operation="embeddings",status="200"} 1`,
		`aoai_gateway_attempts_total{region="eastus",outcome="failed over",status="429"} 1`,
		`aoai_gateway_attempts_total{region="westus",outcome="served",status="200"} 3`,
		`aoai_gateway_attempts_total{region="eastus",outcome="served",status="200"} 1`, // embeddings: another model
		`aoai_gateway_failovers_total{region="westus"} 1`,
		`aoai_gateway_rests_total{region="eastus",status="429"} 1`,
		`aoai_gateway_request_duration_seconds_count{operation="chat/completions"} 3`,
		`aoai_gateway_request_duration_seconds_bucket{operation="chat/completions",le="+Inf"} 3`,
		`aoai_gateway_attempt_duration_seconds_count{region="eastus"} 2`,
		`aoai_gateway_in_flight_requests 0`,
		`aoai_gateway_region_resting{region="eastus"} 0`,
		`aoai_gateway_region_models_unavailable{region="eastus"} 1`,
		`# TYPE aoai_gateway_request_duration_seconds histogram`,
	} {
		assert.Contains(t, text, line+"\n")
	}
	assertExposition(t, text)
}

// assertExposition checks every line is a comment or "name{labels} value" with a number for value, and that
// histogram buckets are cumulative.
func assertExposition(t *testing.T, text string) {
	t.Helper()
	last := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		if name, labels, ok := strings.Cut(line[:i], "_bucket{"); ok {
			series := name + labels[:strings.Index(labels, ",le=")]
			assert.GreaterOrEqual(t, v, last[series], "buckets are cumulative: %s", line)
			last[series] = v
		}
	}
}

// TestGatewayHedgeWinIsNoFailover: aoai_gateway_failovers_total{region} counts "requests served after another
// region failed them" (docs/gateway.md). A hedge that wins is served after the attempt it hedged, which lost a race and
// failed nothing, so it is not counted.
func TestGatewayHedgeWinIsNoFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startNetFleet(t, []string{"eastus", "westus"}, gateway.Config{AllowNoAuth: true},
			failover.WithHedging(failover.Hedging{Delay: 100 * time.Millisecond, MaxShare: 1}))
		f.regions[0].Script(failovertest.Reply{Delay: 5 * time.Second})

		req := httptest.NewRequest(http.MethodPost, "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
			strings.NewReader(`{"messages":[{"role":"user","content":"Say hello."}]}`))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		f.gateway.ServeHTTP(w, req)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		require.Equal(t, "westus", w.Header().Get("X-Failover-Region"))

		m := httptest.NewRecorder()
		f.gateway.ServeHTTP(m, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		metrics := m.Body.String()
		require.Contains(t, metrics, `aoai_gateway_attempts_total{region="eastus",outcome="lost",status="0"} 1`)
		assert.NotContains(t, metrics, `aoai_gateway_failovers_total{region="westus"} 1`,
			"no region failed the request: eastus lost a race")
	})
}

func TestNewRefusesBadConfig(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	for _, tc := range []struct {
		cfg  gateway.Config
		want string
	}{
		{gateway.Config{}, "Keys: none given"},
		{gateway.Config{Keys: []string{"ok", ""}}, "Keys[1]"},
		{gateway.Config{Keys: []string{" padded "}}, "Keys[0]"},
		{gateway.Config{Keys: []string{"k"}, MaxBodyBytes: -1}, "must not be negative"},
	} {
		g, err := gateway.New(f.client, tc.cfg)
		assert.Nil(t, g)
		assert.ErrorContains(t, err, tc.want)
		if err != nil {
			assert.NotContains(t, err.Error(), "padded")
		}
	}
	g, err := gateway.New(nil, gateway.Config{Keys: []string{"k"}})
	assert.Nil(t, g)
	assert.Error(t, err)
}

// A caller that goes away ends the upstream request too: the region sees its context end.
func TestCallerGoneEndsTheUpstreamRequest(t *testing.T) {
	arrived, ended, stop := make(chan struct{}), make(chan struct{}), make(chan struct{})
	client, url := frontRegion(t, "region-key-1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // net/http watches for the client leaving once the body is read
		close(arrived)
		select {
		case <-r.Context().Done():
			close(ended)
		case <-stop: // the test failed: let the server close
		}
	}))
	t.Cleanup(func() { close(stop) }) // runs before the region closes

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := modes[1].api(url, gatewayKey).CreateChatCompletion(ctx, chatRequest())
	require.ErrorIs(t, err, context.Canceled)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the region's request went on after its caller left")
	}
	assert.Equal(t, failover.StateServing, client.Health()[0].State, "a caller leaving is no fault of the region")
}
