package failover

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	const azure429 = `{"error":{"code":"429","message":"Requests ... exceeded token rate limit"}}`
	const quota = `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`
	retry6 := http.Header{"Retry-After": {"6"}}
	cases := []struct {
		status int
		header http.Header
		body   string
		final  bool
		kind   restKind
		wait   time.Duration
	}{
		{400, nil, `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}`, true, restNone, 0},
		{400, nil, `{"error":{"code":"content_filter","message":"filtered","param":"prompt","status":400}}`, true, restNone, 0},
		{400, nil, `{"error":{"code":"context_length_exceeded","message":"too long"}}`, true, restNone, 0},
		{400, http.Header{"X-Should-Retry": {"true"}}, `{"error":{"message":"x"}}`, false, restFailing, 0},
		{401, nil, `{"error":{"code":"401","message":"Access denied"}}`, false, restFault, 0},
		{401, nil, `{"statusCode": 401, "message": "Unauthorized. Access token is missing"}`, false, restFault, 0},
		{403, retry6, ``, false, restFault, 0}, // a fault's rest is ours to size
		{404, nil, `{"error":{"code":"DeploymentNotFound","message":"no such deployment"}}`, false, restMissing, 0},
		{404, nil, `{"error":{"code":"404","message":"Resource not found"}}`, true, restNone, 0}, // a wrong path
		{404, nil, `{"error":{"message":"The model 'x' does not exist","type":"invalid_request_error","code":"model_not_found"}}`, false, restMissing, 0},
		{400, http.Header{"X-Ms-Fe-Error": {"true"}}, `{"error":{"code":"BadRequest","message":"Could not find an existing deployment to match the model in the request."}}`, false, restMissing, 0},
		{404, nil, `{"error":{"code":"BadRequest","message":"Could not find an existing deployment to match the model in the request."}}`, false, restMissing, 0},
		{404, nil, `<html>Not Found</html>`, true, restNone, 0},
		{408, nil, `{"error":{"code":"Timeout","message":"The operation was timeout."}}`, false, restFailing, 0},
		{409, nil, ``, false, restFailing, 0},
		{413, nil, ``, true, restNone, 0},
		{415, nil, ``, true, restNone, 0},
		{422, nil, ``, true, restNone, 0},
		{429, retry6, azure429, false, restThrottled, 6 * time.Second},
		{429, nil, azure429, false, restThrottled, 0},
		{429, http.Header{"X-Should-Retry": {"false"}, "Retry-After": {"6"}}, azure429, true, restNone, 6 * time.Second},
		{429, nil, quota, false, restFault, 0},
		{500, nil, `{"error":{"message":"server error","type":"server_error","param":null,"code":null}}`, false, restFailing, 0},
		{500, http.Header{"X-Should-Retry": {"false"}}, ``, true, restNone, 0},
		{502, nil, `<html>Bad Gateway</html>`, false, restFailing, 0},
		{503, http.Header{"Retry-After-Ms": {"1500"}}, ``, false, restFailing, 1500 * time.Millisecond},
		{504, nil, ``, false, restFailing, 0},
		{302, nil, ``, false, restFailing, 0},
	}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for _, tc := range cases {
		name := http.StatusText(tc.status) + " " + strings.Join(tc.header.Values("X-Should-Retry"), "") + " " + tc.body
		t.Run(name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Status: http.StatusText(tc.status), Header: tc.header}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			v := classify(resp, []byte(tc.body), now)
			assert.Equal(t, tc.final, v.final, "final")
			assert.Equal(t, tc.kind, v.kind, "rest kind")
			assert.Equal(t, tc.wait, v.wait, "wait")
			require.Error(t, v.cause)
			var apiErr *openai.APIError
			var reqErr *openai.RequestError
			switch {
			case errors.As(v.cause, &apiErr):
				assert.Equal(t, tc.status, apiErr.HTTPStatusCode)
			case errors.As(v.cause, &reqErr):
				assert.Equal(t, tc.status, reqErr.HTTPStatusCode)
				assert.Equal(t, tc.body, string(reqErr.Body))
			default:
				t.Fatalf("cause %T is neither go-openai error type", v.cause)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		header http.Header
		want   time.Duration
		ok     bool
	}{
		{"none", http.Header{}, 0, false},
		{"seconds", http.Header{"Retry-After": {"6"}}, 6 * time.Second, true},
		{"fractional seconds", http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond, true},
		{"zero", http.Header{"Retry-After": {"0"}}, 0, true},
		{"padded", http.Header{"Retry-After": {" 7 "}}, 7 * time.Second, true},
		{"a day", http.Header{"Retry-After": {"86400"}}, 24 * time.Hour, true},
		{"beyond a day is capped", http.Header{"Retry-After": {"1e300"}}, 24 * time.Hour, true},
		{"HTTP date", http.Header{"Retry-After": {"Sun, 22 Nov 2026 10:00:30 GMT"}}, 30 * time.Second, true},
		{"HTTP date in the past", http.Header{"Retry-After": {"Sun, 22 Nov 2026 09:59:00 GMT"}}, 0, false},
		{"negative", http.Header{"Retry-After": {"-5"}}, 0, false},
		{"plus sign", http.Header{"Retry-After": {"+5"}}, 0, false},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0, false},
		{"NaN", http.Header{"Retry-After": {"NaN"}}, 0, false},
		{"Inf", http.Header{"Retry-After": {"Inf"}}, 0, false},
		{"Go duration is not a Retry-After", http.Header{"Retry-After": {"6s"}}, 0, false},
		{"retry-after-ms", http.Header{"Retry-After-Ms": {"250"}}, 250 * time.Millisecond, true},
		{"retry-after-ms fractional", http.Header{"Retry-After-Ms": {"12.5"}}, 12500 * time.Microsecond, true},
		{"x-ms-retry-after-ms", http.Header{"X-Ms-Retry-After-Ms": {"900"}}, 900 * time.Millisecond, true},
		{"ms wins over seconds", http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"2"}}, 1500 * time.Millisecond, true},
		{"retry-after-ms before x-ms", http.Header{"Retry-After-Ms": {"100"}, "X-Ms-Retry-After-Ms": {"200"}}, 100 * time.Millisecond, true},
		{"bad ms falls through", http.Header{"Retry-After-Ms": {"-1"}, "X-Ms-Retry-After-Ms": {"x"}, "Retry-After": {"3"}}, 3 * time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := retryAfter(tc.header, now)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestDefaultBackoffGrowsWithJitterToACap: the rest doubles from 1 s to a cap of 8 s (±20%), so that a region
// that recovers after a long outage is back in service within 10 s.
func TestDefaultBackoffGrowsWithJitterToACap(t *testing.T) {
	for failures, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		4: 8 * time.Second, 5: 8 * time.Second, 40: 8 * time.Second, 100: 8 * time.Second, 0: 8 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := DefaultBackoff(failures)
			assert.GreaterOrEqual(t, d, base*8/10, "failures=%d", failures)
			assert.LessOrEqual(t, d, base*12/10, "failures=%d", failures)
			seen[d] = true
		}
		assert.Greater(t, len(seen), 1, "jittered")
	}
}

func TestModelOf(t *testing.T) {
	cases := map[string]string{
		`{"model":"gpt-4o","messages":[]}`:                       "gpt-4o",
		`{"messages":[{"model":"inner"}],"model":"gpt-4o-mini"}`: "gpt-4o-mini",
		`{"input":["a"],"model":"text-embedding-3-small"}`:       "text-embedding-3-small",
		`{"model":"we\"ird","messages":[]}`:                      `we"ird`,
		`{ "model" : "spaced" }`:                                 "spaced",
		`{"messages":[]}`:                                        "",
		`not json`:                                               "",
		`{"model":42}`:                                           "",
		`{"model":"gpt-4o"`:                                      "gpt-4o", // the fast path does not validate; the service will
	}
	for body, want := range cases {
		assert.Equal(t, want, modelOf([]byte(body)), body)
	}
}

func TestReadAll(t *testing.T) {
	long := strings.Repeat("x", 5000)
	for _, hint := range []int64{-1, 0, 10, 5000, 1 << 40} {
		data, err := readAll(nil, strings.NewReader(long), hint, 1<<20, nil)
		require.NoError(t, err)
		assert.Equal(t, long, string(data))
	}
	_, err := readAll(nil, strings.NewReader(long), -1, 4999, nil)
	assert.ErrorIs(t, err, errBodyTooLarge)
	data, err := readAll(make([]byte, 0, 10), strings.NewReader(long), 5000, 5000, nil)
	require.NoError(t, err, "exactly the limit is allowed")
	assert.Len(t, data, 5000)
}

func TestLooksLikeObject(t *testing.T) {
	assert.True(t, looksLikeObject([]byte(` {"a":1}`+"\n")))
	for _, bad := range []string{"", " ", "{", `{"id":"x","choices":[{"mess`, "<html></html>", `[1]`} {
		assert.False(t, looksLikeObject([]byte(bad)), bad)
	}
}

func TestExhaustedErrorUnwrapsLatestFirst(t *testing.T) {
	first := &openai.APIError{HTTPStatusCode: 429, Message: "first"}
	second := &openai.APIError{HTTPStatusCode: 503, Message: "second"}
	err := &ExhaustedError{Attempts: []Attempt{
		{Region: "a", Status: 429, Err: first, Outcome: OutcomeFailedOver},
		{Region: "b", Status: 503, Err: second, Outcome: OutcomeFailedOver},
		{Region: "c", Err: errors.New("dial tcp: connection refused"), Outcome: OutcomeFailedOver},
	}}
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Same(t, second, apiErr)
	assert.ErrorIs(t, err, ErrExhausted)
	assert.ErrorIs(t, err, first)
	assert.Equal(t, "failover: no region could serve the request (3 attempts): "+
		"a: 429 failed over after 0s: first; b: 503 failed over after 0s: second; "+
		"c: failed over after 0s: dial tcp: connection refused", err.Error())
}

func TestOutcomeString(t *testing.T) {
	assert.Equal(t, "served", OutcomeServed.String())
	assert.Equal(t, "failed over", OutcomeFailedOver.String())
	assert.Equal(t, "returned", OutcomeReturned.String())
	assert.Equal(t, "canceled", OutcomeCanceled.String())
	assert.Equal(t, "Outcome(9)", Outcome(9).String())
}

func TestDescribeCause(t *testing.T) {
	assert.Equal(t, "filtered (content_filter)", describeCause(&openai.APIError{HTTPStatusCode: 400, Code: "content_filter", Message: "filtered"}))
	assert.Equal(t, "slow down", describeCause(&openai.APIError{HTTPStatusCode: 429, Code: "429", Message: "slow down"}))
	assert.Equal(t, "body: <html>oops</html>", describeCause(&openai.RequestError{HTTPStatusCode: 502, Body: []byte(" <html>oops</html>\n")}))
	assert.Equal(t, "no error body", describeCause(&openai.RequestError{HTTPStatusCode: 503}))
	long := describeCause(&openai.RequestError{Body: []byte(strings.Repeat("é", 150))})
	assert.True(t, strings.HasSuffix(long, "é…"), "cut on a rune boundary")
	assert.Equal(t, "dial tcp: refused", describeCause(errors.New("dial tcp: refused")))
}

func TestReplayableRefusesBodiesPastTheLimit(t *testing.T) {
	req, err := http.NewRequest(http.MethodPost, "https://x.example/v1/chat/completions",
		strings.NewReader(strings.Repeat(" ", 300)+`{"model":"gpt-4o"}`))
	require.NoError(t, err)
	req.ContentLength = 1 << 60 // a lie: no allocation of that size may follow
	_, _, err = replayable(req)
	assert.ErrorIs(t, err, errBodyTooLarge)
}

func TestBodyReaderCloseIsSafeConcurrently(t *testing.T) {
	for range 100 {
		buf := answerBuffers.Get().(*[]byte)
		*buf = append((*buf)[:0], `{"id":"x"}`...)
		body := newBodyReader(*buf)
		body.pooled = buf
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { _ = body.Close() })
			wg.Go(func() { _, _ = io.ReadAll(body) })
		}
		wg.Wait()
		assert.Nil(t, body.pooled)
	}
}
