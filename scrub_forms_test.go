package failover_test

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// encodedCores are the base64 characters that encode key's bytes alone when key is embedded at every alignment
// (after 0, 1 or 2 other bytes) in a longer value, in both alphabets: what an echo of, say, "Basic " +
// base64("user:" + key) shows of the key. Padded and unpadded encodings of the key alone contain the first.
func encodedCores(key string) []string {
	var cores []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for p := range 3 {
			full := enc.EncodeToString([]byte(strings.Repeat("\x00", p) + key + "\x00\x00\x00"))
			// Character i holds bits [6i, 6i+6); the key's are [8p, 8(p+len(key))).
			start, end := (8*p+5)/6, 8*(p+len(key))/6
			cores = append(cores, full[start:end])
		}
	}
	return cores
}

// assertNoEncodedKey fails t if text holds 12 characters in a row of any base64 core of key.
func assertNoEncodedKey(t *testing.T, text, key, where string) {
	t.Helper()
	for _, core := range encodedCores(key) {
		for i := 0; i+12 <= len(core); i++ {
			if j := strings.Index(text, core[i:i+12]); j >= 0 {
				t.Errorf("%s: the key shows base64-encoded: …%s…", where, text[max(0, j-40):min(len(text), j+52)])
				return
			}
		}
	}
}

// base64Echoes is a body that echoes key base64-encoded every way a server or proxy might: alone (padded and not,
// both alphabets), and inside longer values at each alignment.
func base64Echoes(key string) string {
	var b strings.Builder
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		for _, prefix := range []string{"", "u:", "us:", "user:"} {
			b.WriteString(" ")
			b.WriteString(enc.EncodeToString([]byte(prefix + key + "?tail")))
			b.WriteString(" ")
			b.WriteString(enc.EncodeToString([]byte(prefix + key)))
		}
	}
	return b.String()
}

// A key a region echoes base64-encoded (a Basic credential, a token's payload, a proxy's debug header) was passed
// on as it came: only the key's own spelling was scrubbed. Every base64 spelling is scrubbed from error bodies,
// the errors and log lines made of them, and headers.
func TestBase64EncodedSecretsAreScrubbed(t *testing.T) {
	key := secrets[0]
	servers := startRegions(t, []string{"eastus", "westus"}, failovertest.WithKey(key))
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	regions := regionsOf(servers...)
	client := newClient(t, regions, failover.WithLogger(logger), failover.WithMaxWait(0))
	echoes := base64Echoes(key)
	header := http.Header{"X-Ms-Echo": {"Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+key))}}
	body := `{"error":{"code":"500","message":"upstream said:` + echoes + `"}}`
	servers[0].Script(failovertest.Reply{Status: http.StatusInternalServerError, Header: header, Body: body})
	servers[1].Script(failovertest.Reply{Status: http.StatusBadRequest, Header: header,
		Body: `{"error":{"code":"400","message":"refused:` + echoes + `"}}`})

	var rec recorder
	status, answer := postModelCtx(t, client, rec.context(context.Background()), "gpt-4o")
	require.Equal(t, http.StatusBadRequest, status, "westus's refusal comes back as it came")
	assert.Contains(t, string(answer), "refused:", "the answer is westus's")
	assertNoEncodedKey(t, string(answer), key, "the answer's body")
	attempts := rec.list()
	require.Len(t, attempts, 2)
	for _, a := range attempts {
		require.Error(t, a.Err)
		assertNoEncodedKey(t, a.Err.Error(), key, a.Region+"'s error")
		for name, values := range a.Header {
			assertNoEncodedKey(t, strings.Join(values, " "), key, a.Region+"'s header "+name)
		}
	}
	assert.Contains(t, logs.bytes().String(), "upstream said:", "the failed attempt's error was logged")
	assertNoEncodedKey(t, logs.bytes().String(), key, "the log")
}

// A key a region echoes in the headers of an answer it serves reached the caller: headers were scrubbed only on
// failed answers. A served answer's are too, a JSON answer's and a stream's.
func TestServedAnswersHeadersAreScrubbed(t *testing.T) {
	key := secrets[1]
	servers := startRegions(t, []string{"eastus"}, failovertest.WithKey(key))
	client := newClient(t, regionsOf(servers...))
	header := http.Header{"X-Ms-Echo": {"api-key=" + key}, "X-Ms-Encoded": {base64.RawURLEncoding.EncodeToString([]byte(key))}}
	for _, stream := range []bool{false, true} {
		servers[0].Script(failovertest.Reply{Header: header})
		body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]`
		if stream {
			body += `,"stream":true`
		}
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "https://example.invalid/v1/chat/completions",
			strings.NewReader(body+"}"))
		require.NoError(t, err)
		resp, err := client.RoundTrip(req)
		require.NoError(t, err)
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, string(data), "Hello", "served (stream: %v)", stream)
		require.NotEmpty(t, resp.Header.Get("X-Ms-Echo"), "the header itself comes through")
		for name, values := range resp.Header {
			text := strings.Join(values, " ")
			assert.NotContains(t, text, key, "header %s (stream: %v)", name, stream)
			assertNoEncodedKey(t, text, key, "header "+name)
		}
	}
}

// postModelCtx is postModel under ctx.
func postModelCtx(t *testing.T, client *failover.Client, ctx context.Context, model string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://example.invalid/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	resp, err := client.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}
