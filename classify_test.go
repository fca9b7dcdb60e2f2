package failover

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	const azure429 = `{"error":{"code":"429","message":"Requests ... exceeded token rate limit"}}`
	cases := []struct {
		status int
		header http.Header
		body   string
		final  bool
	}{
		{400, nil, `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}`, true},
		{400, nil, `{"error":{"code":"content_filter","message":"filtered","param":"prompt","status":400}}`, true},
		{400, nil, `{"error":{"code":"context_length_exceeded","message":"too long"}}`, true},
		{400, http.Header{"X-Should-Retry": {"true"}}, `{"error":{"message":"x"}}`, false},
		{401, nil, `{"error":{"code":"401","message":"Access denied"}}`, false},
		{401, nil, `{"statusCode": 401, "message": "Unauthorized. Access token is missing"}`, false},
		{403, nil, ``, false},
		{404, nil, `{"error":{"code":"DeploymentNotFound","message":"no such deployment"}}`, false},
		{404, nil, `{"error":{"code":"404","message":"Resource not found"}}`, false},
		{408, nil, `{"error":{"code":"Timeout","message":"The operation was timeout."}}`, false},
		{409, nil, ``, false},
		{413, nil, ``, true},
		{415, nil, ``, true},
		{422, nil, ``, true},
		{429, nil, azure429, false},
		{429, http.Header{"X-Should-Retry": {"false"}}, azure429, true},
		{429, nil, `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`, false},
		{500, nil, `{"error":{"message":"server error","type":"server_error","param":null,"code":null}}`, false},
		{500, http.Header{"X-Should-Retry": {"false"}}, ``, true},
		{502, nil, `<html>Bad Gateway</html>`, false},
		{503, nil, ``, false},
		{504, nil, ``, false},
		{302, nil, ``, false},
	}
	for _, tc := range cases {
		name := http.StatusText(tc.status) + " " + strings.Join(tc.header.Values("X-Should-Retry"), "") + " " + tc.body
		t.Run(name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Status: http.StatusText(tc.status), Header: tc.header}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			cause, final := classify(resp, []byte(tc.body))
			assert.Equal(t, tc.final, final)
			require.Error(t, cause)
			var apiErr *openai.APIError
			var reqErr *openai.RequestError
			switch {
			case errors.As(cause, &apiErr):
				assert.Equal(t, tc.status, apiErr.HTTPStatusCode)
			case errors.As(cause, &reqErr):
				assert.Equal(t, tc.status, reqErr.HTTPStatusCode)
				assert.Equal(t, tc.body, string(reqErr.Body))
			default:
				t.Fatalf("cause %T is neither go-openai error type", cause)
			}
		})
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
		data, err := readAll(nil, strings.NewReader(long), hint, 1<<20)
		require.NoError(t, err)
		assert.Equal(t, long, string(data))
	}
	_, err := readAll(nil, strings.NewReader(long), -1, 4999)
	assert.ErrorIs(t, err, errBodyTooLarge)
	data, err := readAll(make([]byte, 0, 10), strings.NewReader(long), 5000, 5000)
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
