package failover_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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

func TestAnswerError(t *testing.T) {
	retryAt := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	missing := failover.Skip{Region: "eastus", State: failover.StateMissing, Reason: "404: model not deployed here"}
	notFound := failover.Attempt{Region: "westus", Status: http.StatusNotFound, Outcome: failover.OutcomeFailedOver}
	failed := failover.Attempt{Region: "westus", Status: http.StatusInternalServerError, Outcome: failover.OutcomeFailedOver}
	throttled := failover.Attempt{Region: "westus", Status: http.StatusTooManyRequests, Outcome: failover.OutcomeFailedOver}
	refused := failover.Attempt{Region: "westus", Status: http.StatusUnauthorized, Outcome: failover.OutcomeFailedOver}
	broke := &openai.APIError{Code: "insufficient_quota", Message: "out of credit", HTTPStatusCode: http.StatusTooManyRequests}
	noCredit := failover.Attempt{Region: "openai", Status: http.StatusTooManyRequests, Err: broke, Outcome: failover.OutcomeFailedOver}
	probing := failover.Skip{Region: "eastus", State: failover.StateProbing}
	resting := failover.Skip{Region: "eastus", State: failover.StateResting, Reason: "500"}
	deadline, cancelDeadline := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelDeadline()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	cases := []struct {
		name    string
		ctx     context.Context
		err     error
		status  int
		code    string
		retryAt bool // RetryAt set
		message string
	}{
		{"body over its limit", nil, fmt.Errorf("failover: reading the body: %w", &http.MaxBytesError{Limit: 1024}),
			http.StatusRequestEntityTooLarge, "request_too_large", false, "request body is larger than 1024 bytes"},
		{"exhausted, throttled", nil, &failover.ExhaustedError{Model: "gpt-4o", Attempts: []failover.Attempt{throttled}, RetryAt: retryAt},
			http.StatusTooManyRequests, "429", true, `no region could serve the request for model "gpt-4o"`},
		{"exhausted, throttled and failing", nil, &failover.ExhaustedError{Attempts: []failover.Attempt{failed, throttled}, RetryAt: retryAt},
			http.StatusTooManyRequests, "429", true, ""},
		{"exhausted, failing with RetryAt", nil, &failover.ExhaustedError{Model: "gpt-4o", Attempts: []failover.Attempt{failed}, RetryAt: retryAt},
			http.StatusServiceUnavailable, "503", true, `no region could serve the request for model "gpt-4o"`},
		{"exhausted, credentials refused", nil, &failover.ExhaustedError{Attempts: []failover.Attempt{refused, noCredit}, Skipped: []failover.Skip{missing}, RetryAt: retryAt},
			http.StatusBadGateway, "upstream_credentials_refused", false, "not the caller's"},
		{"exhausted, refused and failing", nil, &failover.ExhaustedError{Attempts: []failover.Attempt{refused, failed}, RetryAt: retryAt},
			http.StatusServiceUnavailable, "503", true, ""},
		{"exhausted, all skipped missing", nil, &failover.ExhaustedError{Skipped: []failover.Skip{missing, missing}},
			http.StatusNotFound, "DeploymentNotFound", false, "missing"},
		{"exhausted, all attempts 404", nil, &failover.ExhaustedError{Attempts: []failover.Attempt{notFound, notFound}},
			http.StatusNotFound, "DeploymentNotFound", false, "404"},
		{"exhausted, skipped missing and attempts 404", nil, &failover.ExhaustedError{Attempts: []failover.Attempt{notFound}, Skipped: []failover.Skip{missing}},
			http.StatusNotFound, "DeploymentNotFound", false, ""},
		{"exhausted, one missing and one failed", nil, &failover.ExhaustedError{Attempts: []failover.Attempt{failed}, Skipped: []failover.Skip{missing}},
			http.StatusBadGateway, "502", false, ""},
		{"exhausted, a region probing", nil, &failover.ExhaustedError{Attempts: []failover.Attempt{failed}, Skipped: []failover.Skip{probing}},
			http.StatusServiceUnavailable, "503", true, "probing"},
		{"exhausted, probing and missing", nil, &failover.ExhaustedError{Skipped: []failover.Skip{missing, probing}},
			http.StatusServiceUnavailable, "503", true, ""},
		{"exhausted, resting without a time", nil, &failover.ExhaustedError{Skipped: []failover.Skip{resting}},
			http.StatusBadGateway, "502", false, ""},
		{"exhausted with nothing", nil, &failover.ExhaustedError{}, http.StatusBadGateway, "502", false, "0 attempts"},
		{"exhausted wins over a canceled context", canceled, &failover.ExhaustedError{Attempts: []failover.Attempt{failed}},
			http.StatusBadGateway, "502", false, ""},
		{"deadline exceeded", deadline, fmt.Errorf("failover: %w", context.DeadlineExceeded),
			http.StatusGatewayTimeout, "timeout", false, "context deadline exceeded"},
		{"canceled", canceled, fmt.Errorf("failover: %w", context.Canceled),
			failover.StatusClientClosed, "canceled", false, "context canceled"},
		{"request's own fault", nil, errors.New("failover: the request names no model"),
			http.StatusBadRequest, "invalid_request", false, "failover: the request names no model"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			a := failover.AnswerError(ctx, tc.err)
			assert.Equal(t, tc.status, a.Status)
			assert.Equal(t, tc.code, a.Code)
			assert.Contains(t, a.Message, tc.message)
			var exhausted *failover.ExhaustedError
			if errors.As(tc.err, &exhausted) {
				assert.Contains(t, a.Message, tc.err.Error(), "an exhausted request says all it knows")
			}
			switch {
			case !tc.retryAt:
				assert.Zero(t, a.RetryAt)
			case exhausted != nil && !exhausted.RetryAt.IsZero():
				assert.Equal(t, retryAt, a.RetryAt)
			default: // 503: about a second ahead
				assert.WithinDuration(t, time.Now().Add(time.Second), a.RetryAt, 200*time.Millisecond)
			}
		})
	}
}

// TestAnswerErrorOfRealFailures maps the errors a client returns for real failures.
func TestAnswerErrorOfRealFailures(t *testing.T) {
	t.Run("rate limited", func(t *testing.T) {
		servers := startRegions(t, []string{"eastus"})
		servers[0].Script(failovertest.RateLimited(30 * time.Second))
		client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
		start := time.Now()
		_, err := client.ChatCompletion(t.Context(), hello())
		require.Error(t, err)
		a := failover.AnswerError(t.Context(), err)
		assert.Equal(t, http.StatusTooManyRequests, a.Status)
		assert.Equal(t, "429", a.Code)
		assert.WithinDuration(t, start.Add(30*time.Second), a.RetryAt, 2*time.Second)
	})
	t.Run("deployment not found", func(t *testing.T) {
		servers := startRegions(t, []string{"eastus", "westus"})
		for _, s := range servers {
			s.Script(failovertest.DeploymentNotFound())
		}
		client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
		_, err := client.ChatCompletion(t.Context(), hello())
		require.Error(t, err)
		a := failover.AnswerError(t.Context(), err)
		assert.Equal(t, http.StatusNotFound, a.Status)
		assert.Equal(t, "DeploymentNotFound", a.Code)
		assert.Zero(t, a.RetryAt)

		// Asked again, every region is known to lack the model: passed over, still 404.
		_, err = client.ChatCompletion(t.Context(), hello())
		require.Error(t, err)
		assert.Equal(t, http.StatusNotFound, failover.AnswerError(t.Context(), err).Status)
		assert.Equal(t, 2, servers[0].Requests()+servers[1].Requests(), "the second request reached no region")
	})
	t.Run("server error", func(t *testing.T) {
		// A 500 rests the region for the backoff: a retry can succeed when it ends, and the answer says so.
		servers := startRegions(t, []string{"eastus"})
		servers[0].Script(failovertest.InternalError())
		client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0), fixedBackoff(5*time.Second))
		start := time.Now()
		_, err := client.ChatCompletion(t.Context(), hello())
		require.Error(t, err)
		a := failover.AnswerError(t.Context(), err)
		assert.Equal(t, http.StatusServiceUnavailable, a.Status, "the region rests, but not for its quota")
		assert.WithinDuration(t, start.Add(5*time.Second), a.RetryAt, 2*time.Second)
		assert.Contains(t, a.Message, "500")
	})
	t.Run("no model", func(t *testing.T) {
		servers := startRegions(t, []string{"eastus"})
		client, err := failover.New(regionsOf(servers...)) // no default model
		require.NoError(t, err)
		t.Cleanup(client.CloseIdleConnections)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://ignored.example/v1/chat/completions",
			strings.NewReader(`{"messages":[]}`))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err, "as a doer, the Client answers")
		body := readAll(t, resp)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Contains(t, body, `"code":"invalid_request"`)
		assert.Contains(t, body, "names no model")
		assert.Zero(t, servers[0].Requests())
	})
}

// errorBody is the shape of an error body, field by field, with param kept apart from a missing one.
type errorBody struct {
	Error map[string]json.RawMessage `json:"error"`
}

func TestErrorAnswerWrite(t *testing.T) {
	cases := []struct {
		answer   failover.ErrorAnswer
		kind     string
		retry    bool
		minMilli int
	}{
		{failover.ErrorAnswer{Status: http.StatusBadGateway, Code: "502", Message: "no region could serve"}, "server_error", false, 0},
		{failover.ErrorAnswer{Status: http.StatusGatewayTimeout, Code: "timeout", Message: "deadline"}, "server_error", false, 0},
		{failover.ErrorAnswer{Status: http.StatusNotFound, Code: "DeploymentNotFound", Message: "missing"}, "invalid_request_error", false, 0},
		{failover.ErrorAnswer{Status: http.StatusBadRequest, Code: "invalid_request", Message: `names no "model"`}, "invalid_request_error", false, 0},
		{failover.ErrorAnswer{Status: http.StatusTooManyRequests, Code: "429", Message: "rate limited",
			RetryAt: time.Now().Add(1500 * time.Millisecond)}, "invalid_request_error", true, 1000},
		{failover.ErrorAnswer{Status: http.StatusServiceUnavailable, Code: "503", Message: "probing",
			RetryAt: time.Now().Add(1500 * time.Millisecond)}, "server_error", true, 1000},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.answer.Status), func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.answer.Write(rec)
			assert.Equal(t, tc.answer.Status, rec.Code)
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			assert.Equal(t, strconv.Itoa(rec.Body.Len()), rec.Header().Get("Content-Length"))
			assert.Equal(t, tc.answer.Body(), rec.Body.Bytes(), "Write writes Body")

			var body errorBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
			assert.Len(t, body.Error, 4, "message, type, param, code: %s", rec.Body.String())
			assert.JSONEq(t, strconv.Quote(tc.answer.Message), string(body.Error["message"]))
			assert.JSONEq(t, strconv.Quote(tc.kind), string(body.Error["type"]))
			assert.Equal(t, "null", string(body.Error["param"]))
			assert.JSONEq(t, strconv.Quote(tc.answer.Code), string(body.Error["code"]))

			if !tc.retry {
				assert.Empty(t, rec.Header().Get("Retry-After"))
				assert.Empty(t, rec.Header().Get("Retry-After-Ms"))
				return
			}
			assert.Equal(t, "2", rec.Header().Get("Retry-After"), "1.5 s, rounded up to whole seconds")
			ms, err := strconv.Atoi(rec.Header().Get("Retry-After-Ms"))
			require.NoError(t, err)
			assert.LessOrEqual(t, ms, 1500)
			assert.GreaterOrEqual(t, ms, tc.minMilli)
		})
	}
}

func TestErrorAnswerWriteRetryAfterOfAPastTime(t *testing.T) {
	rec := httptest.NewRecorder()
	failover.ErrorAnswer{Status: http.StatusTooManyRequests, Code: "429", Message: "now", RetryAt: time.Now().Add(-time.Minute)}.Write(rec)
	assert.Equal(t, "1", rec.Header().Get("Retry-After"), "a time passed is no reason for a negative or zero wait")
	assert.Equal(t, "1", rec.Header().Get("Retry-After-Ms"))
}

// countingWriter is a ResponseWriter that counts what is done to it.
type countingWriter struct {
	header       http.Header
	writeHeaders int
	writes       int
}

func (w *countingWriter) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}
func (w *countingWriter) WriteHeader(int)             { w.writeHeaders++ }
func (w *countingWriter) Write(p []byte) (int, error) { w.writes++; return len(p), nil }

func TestErrorAnswerWriteForAClientThatClosedWritesNothing(t *testing.T) {
	var w countingWriter
	failover.ErrorAnswer{Status: failover.StatusClientClosed, Code: "canceled", Message: "context canceled",
		RetryAt: time.Now().Add(time.Second)}.Write(&w)
	assert.Zero(t, w.writeHeaders)
	assert.Zero(t, w.writes)
	assert.Empty(t, w.header)
}

func TestErrorAnswerBodyDecodesAsGoOpenAIError(t *testing.T) {
	answer := failover.ErrorAnswer{Status: http.StatusTooManyRequests, Code: "429", Message: `rate limited: "eastus"`,
		RetryAt: time.Now().Add(1500 * time.Millisecond)}
	rec := httptest.NewRecorder()
	answer.Write(rec)
	var resp openai.ErrorResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp))
	require.NotNil(t, resp.Error)
	assert.Equal(t, "429", resp.Error.Code)
	assert.Equal(t, answer.Message, resp.Error.Message)
	assert.Equal(t, "invalid_request_error", resp.Error.Type)
	assert.Nil(t, resp.Error.Param)

	// And a go-openai client that gets it over HTTP returns it as its *openai.APIError.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		failover.ErrorAnswer{Status: http.StatusBadGateway, Code: "502", Message: "no region could serve the request"}.Write(w)
	}))
	t.Cleanup(srv.Close)
	cfg := openai.DefaultConfig("sk-unused")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = srv.Client()
	_, err := openai.NewClientWithConfig(cfg).CreateChatCompletion(t.Context(), chatRequest())
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusBadGateway, apiErr.HTTPStatusCode)
	assert.Equal(t, "502", apiErr.Code)
	assert.Equal(t, "no region could serve the request", apiErr.Message)
	assert.Equal(t, "server_error", apiErr.Type)
}
