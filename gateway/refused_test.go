package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a slog.Handler that keeps every record, at every level.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recorder) WithGroup(string) slog.Handler            { return h }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// logged is one record as a message and its attributes, by key, as text.
type logged struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (h *recorder) logged() []logged {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logged
	for _, r := range h.records {
		l := logged{level: r.Level, msg: r.Message, attrs: map[string]string{}}
		r.Attrs(func(a slog.Attr) bool {
			l.attrs[a.Key] = a.Value.String()
			return true
		})
		out = append(out, l)
	}
	return out
}

// send makes one request to the gateway with plain net/http and returns the answer, its body read.
func send(t *testing.T, method, url string, header map[string]string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func metricsText(t *testing.T, url string) string {
	t.Helper()
	resp, text := send(t, http.MethodGet, url+"/metrics", map[string]string{"api-key": gatewayKey}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, text)
	return text
}

// Every request the gateway refuses itself is counted by reason and logged at Debug, with its method, its path
// without the query, its status and the reason; never a key or an Authorization header.
func TestRefusedRequestsAreCountedAndLogged(t *testing.T) {
	const wrongKey = "wrong-key-5150c0ffee"
	logs := &recorder{}
	f := startFleet(t, []string{"eastus"}, gateway.Config{Logger: slog.New(logs), MaxBodyBytes: 1024})
	withKey := map[string]string{"api-key": gatewayKey, "Authorization": "Bearer " + gatewayKey}

	// Before any refusal, every reason is there, at 0.
	text := metricsText(t, f.url)
	for _, reason := range []string{"not_found", "method_not_allowed", "too_large", "unauthorized"} {
		assert.Contains(t, text, fmt.Sprintf("aoai_gateway_refused_total{reason=%q} 0\n", reason))
	}

	type refusal struct {
		method, target string
		header         map[string]string
		body           string
		status         int
		reason, path   string
	}
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", 2000) + `"}]}`
	refusals := []refusal{
		{"GET", "/v1/fine_tuning/jobs?api-key=" + gatewayKey, withKey, "", 404, "not_found", "/v1/fine_tuning/jobs"},
		{"POST", "/openai/deployments/gpt-4o/responses", withKey, `{}`, 404, "not_found", "/openai/deployments/gpt-4o/responses"},
		{"DELETE", "/v1/models", withKey, "", 405, "method_not_allowed", "/v1/models"},
		{"POST", "/healthz", nil, "x", 405, "method_not_allowed", "/healthz"},
		{"POST", "/v1/chat/completions?key=" + wrongKey, map[string]string{"api-key": wrongKey}, `{}`, 401, "unauthorized", "/v1/chat/completions"},
		{"GET", "/openai/files/file-1?api-version=2024-10-21", map[string]string{"Authorization": "Bearer " + wrongKey}, "", 401, "unauthorized", "/openai/files/file-1"},
		{"GET", "/metrics", nil, "", 401, "unauthorized", "/metrics"},
		{"POST", "/v1/chat/completions", withKey, big, 413, "too_large", "/v1/chat/completions"},
	}
	for _, r := range refusals {
		resp, answer := send(t, r.method, f.url+r.target, r.header, strings.NewReader(r.body))
		require.Equal(t, r.status, resp.StatusCode, "%s %s: %s", r.method, r.target, answer)
		assert.NotContains(t, answer, wrongKey)
		if r.status == http.StatusNotFound {
			assert.Contains(t, answer, "responses, files, batches and models", "the 404 says what the gateway serves")
		}
		if r.status == http.StatusMethodNotAllowed {
			assert.NotEmpty(t, resp.Header.Get("Allow"))
		}
	}
	// A chunked body over the limit is refused once the limit is passed: counted as well.
	resp, answer := send(t, http.MethodPost, f.url+"/v1/chat/completions", withKey, io.MultiReader(strings.NewReader(big)))
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, answer)
	refusals = append(refusals, refusal{"POST", "/v1/chat/completions", nil, "", 413, "too_large", "/v1/chat/completions"})
	assert.Zero(t, f.regions[0].Requests(), "nothing refused goes upstream")

	text = metricsText(t, f.url)
	for reason, n := range map[string]int{"not_found": 2, "method_not_allowed": 2, "unauthorized": 3, "too_large": 2} {
		assert.Contains(t, text, fmt.Sprintf("aoai_gateway_refused_total{reason=%q} %d\n", reason, n))
	}
	assert.Contains(t, text, "# TYPE aoai_gateway_refused_total counter\n")
	assertExposition(t, text)

	var debug []logged
	for _, l := range logs.logged() {
		for _, secret := range []string{gatewayKey, wrongKey, "Bearer", f.regions[0].Key} {
			assert.NotContains(t, l.msg, secret)
			for k, v := range l.attrs {
				assert.NotContains(t, k+"="+v, secret, "a log line shows a secret: %v", l)
			}
		}
		if l.msg == "aoai-gateway refused" {
			assert.Equal(t, slog.LevelDebug, l.level)
			debug = append(debug, l)
		}
	}
	require.Len(t, debug, len(refusals))
	for i, r := range refusals {
		assert.Equal(t, map[string]string{"method": r.method, "path": r.path, "status": fmt.Sprint(r.status), "reason": r.reason},
			debug[i].attrs, "%s %s", r.method, r.target)
	}
}

// A refusal's log line shows at most 256 bytes of the caller's path: a scanner's must not fill the logs.
func TestRefusedPathIsClippedInLogs(t *testing.T) {
	logs := &recorder{}
	f := startFleet(t, []string{"eastus"}, gateway.Config{Logger: slog.New(logs)})
	resp, _ := send(t, http.MethodGet, f.url+"/"+strings.Repeat("x", 5000), nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	got := logs.logged()
	require.Len(t, got, 1)
	assert.Equal(t, "/"+strings.Repeat("x", 255)+"…", got[0].attrs["path"])
}

// uploadGateway is a gateway with a 1 KiB body limit and a 4 KiB upload limit in front of one region that answers
// 200 to anything and counts the bytes of the bodies it gets.
func uploadGateway(t *testing.T) (url string, got *atomic.Int64, calls *atomic.Int64) {
	t.Helper()
	got, calls = new(atomic.Int64), new(atomic.Int64)
	region := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"text":"ok","object":"file","id":"file-1"}`)
	}))
	t.Cleanup(region.Close)
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: region.URL + "/openai/v1", APIKey: "region-key-1"}},
		failover.WithMaxWait(0))
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	gw, err := gateway.New(client, gateway.Config{Keys: []string{gatewayKey}, MaxBodyBytes: 1024, MaxUploadBytes: 4096})
	require.NoError(t, err)
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv.URL, got, calls
}

// multipart is a multipart/form-data body of about size bytes with a model field and a file, and its content type.
func multipart(size int) (string, string) {
	head := "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n" +
		"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
	tail := "\r\n--b--\r\n"
	return head + strings.Repeat("a", max(0, size-len(head)-len(tail))) + tail, "multipart/form-data; boundary=b"
}

// Audio transcriptions and translations and file uploads may be as large as MaxUploadBytes; every other body is
// bounded by MaxBodyBytes.
func TestUploadsHaveTheirOwnLimit(t *testing.T) {
	url, got, calls := uploadGateway(t)
	for _, tc := range []struct {
		path    string
		size    int
		chunked bool
		refused bool
	}{
		{"/v1/chat/completions", 2000, false, true},
		{"/v1/audio/speech", 2000, false, true},          // JSON: not an upload
		{"/openai/v1/batches", 2000, true, true},         // JSON: not an upload
		{"/v1/audio/transcriptions", 1000, false, false}, // under both limits
		{"/v1/audio/transcriptions", 2000, false, false}, // over the body limit, under the upload limit
		{"/openai/v1/audio/translations", 4000, true, false},
		{"/openai/deployments/whisper/audio/transcriptions", 3000, false, false},
		{"/v1/files", 4096, false, false},
		{"/v1/audio/transcriptions", 5000, false, true},
		{"/openai/v1/audio/translations", 5000, true, true},
		{"/openai/files", 4097, false, true},
	} {
		body, contentType := multipart(tc.size)
		var in io.Reader = strings.NewReader(body)
		if tc.chunked {
			in = io.MultiReader(in) // no length: sent chunked, refused once past the limit
		}
		before := calls.Load()
		resp, answer := send(t, http.MethodPost, url+tc.path,
			map[string]string{"api-key": gatewayKey, "Content-Type": contentType}, in)
		if tc.refused {
			require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "%s, %d bytes: %s", tc.path, tc.size, answer)
			assert.Equal(t, before, calls.Load(), "%s: nothing goes upstream", tc.path)
			continue
		}
		require.NotEqual(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "%s, %d bytes: %s", tc.path, tc.size, answer)
		// Until the client routes uploads it answers 404 for them itself; once it does, the region gets the body whole.
		if resp.StatusCode == http.StatusOK {
			assert.Equal(t, int64(len(body)), got.Load(), tc.path)
		}
	}
	text := metricsText(t, url)
	assert.Contains(t, text, `aoai_gateway_refused_total{reason="too_large"} 6`+"\n")
}

func TestNewRefusesNegativeUploadLimit(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	g, err := gateway.New(f.client, gateway.Config{Keys: []string{"k"}, MaxUploadBytes: -1})
	assert.Nil(t, g)
	assert.ErrorContains(t, err, "MaxUploadBytes")
}
