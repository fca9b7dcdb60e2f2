package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// prefixes are the three shapes of every route: the OpenAI API's, Azure's v1 surface's and Azure's classic one's
// (for model operations, with a deployment in the path), with the api label of each.
var prefixes = []struct{ model, resource, api string }{
	{"/v1/", "/v1/", "openai"},
	{"/openai/v1/", "/openai/v1/", "azure-v1"},
	{"/openai/deployments/gpt-4o/", "/openai/", "azure"},
}

func TestRouteOfEveryRouteInEveryShape(t *testing.T) {
	get, post, del := http.MethodGet, http.MethodPost, http.MethodDelete
	for _, tc := range []struct {
		path     string // below the prefix; model operations are POSTs under the model prefix
		model    bool
		methods  map[string]string // method -> operation label
		upload   bool              // the route's allowed POST is an upload
		typed    bool
		refusals []string // methods refused with 405
	}{
		{path: "chat/completions", model: true, methods: map[string]string{post: "chat/completions"}, refusals: []string{get}},
		{path: "completions", model: true, methods: map[string]string{post: "completions"}, refusals: []string{get}},
		{path: "embeddings", model: true, methods: map[string]string{post: "embeddings"}, refusals: []string{del}},
		{path: "images/generations", model: true, methods: map[string]string{post: "images/generations"}, refusals: []string{get}},
		{path: "audio/speech", model: true, methods: map[string]string{post: "audio/speech"}, refusals: []string{get}},
		{path: "audio/transcriptions", model: true, methods: map[string]string{post: "audio/transcriptions"}, upload: true, refusals: []string{get}},
		{path: "audio/translations", model: true, methods: map[string]string{post: "audio/translations"}, upload: true, refusals: []string{http.MethodPut}},
		{path: "responses", methods: map[string]string{post: "responses"}, typed: true, refusals: []string{get, del}},
		{path: "responses/resp_67cb71b351908190a308f3859487620d", methods: map[string]string{get: "responses.get", del: "responses.delete"},
			typed: true, refusals: []string{post, http.MethodPatch}},
		{path: "responses/resp_1/cancel", methods: map[string]string{post: "responses.cancel"}, typed: true, refusals: []string{get}},
		{path: "responses/resp_1/input_items", methods: map[string]string{get: "responses.input_items"}, typed: true, refusals: []string{post}},
		{path: "files", methods: map[string]string{get: "files.list", post: "files"}, upload: true, refusals: []string{del}},
		{path: "files/file-abc123", methods: map[string]string{get: "files.get", del: "files.delete"}, refusals: []string{post}},
		{path: "files/assistant-XyZ.9/content", methods: map[string]string{get: "files.content"}, refusals: []string{post, del}},
		{path: "batches", methods: map[string]string{get: "batches.list", post: "batches"}, refusals: []string{del}},
		{path: "batches/batch_6f1b3c2e-0a4d-4e1b-9a47-1d2c3b4a5f60", methods: map[string]string{get: "batches.get"}, refusals: []string{del, post}},
		{path: "batches/batch_1/cancel", methods: map[string]string{post: "batches.cancel"}, refusals: []string{get}},
		{path: "models", methods: map[string]string{get: "models"}, refusals: []string{post, http.MethodHead}},
	} {
		for _, prefix := range prefixes {
			path := prefix.resource + tc.path
			if tc.model {
				path = prefix.model + tc.path
			}
			for method, op := range tc.methods {
				rt, found := routeOf(method, path)
				require.True(t, found, "%s %s", method, path)
				assert.True(t, rt.allowed(), "%s %s", method, path)
				assert.Equal(t, op, rt.operation, "%s %s", method, path)
				assert.Equal(t, prefix.api, rt.api, "%s %s", method, path)
				assert.Equal(t, path, rt.path, "the client routes by the caller's path")
				assert.Equal(t, tc.upload && method == post, rt.upload, "%s %s: upload", method, path)
				assert.Equal(t, tc.typed, rt.typed, "%s %s: typed", method, path)
				assert.ElementsMatch(t, keys(tc.methods), rt.methods, "%s %s: Allow", method, path)
			}
			for _, method := range tc.refusals {
				rt, found := routeOf(method, path)
				require.True(t, found, "%s %s: the path is served, the method is not", method, path)
				assert.False(t, rt.allowed(), "%s %s", method, path)
				assert.Empty(t, rt.operation, "%s %s", method, path)
				assert.ElementsMatch(t, keys(tc.methods), rt.methods, "%s %s: Allow", method, path)
			}
		}
	}
}

func keys(m map[string]string) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

func TestRouteOfRefusesOtherPaths(t *testing.T) {
	long := strings.Repeat("a", 129)
	for _, path := range []string{
		"", "/", "/v1", "/v1/", "/openai", "/openai/", "/openai/v1", "/openai/deployments",
		// Model operations on the classic surface need a deployment; resources have none.
		"/openai/chat/completions", "/openai/embeddings", "/openai/audio/speech",
		"/openai/deployments/gpt-4o/responses", "/openai/deployments/gpt-4o/files", "/openai/deployments/gpt-4o/models",
		"/openai/deployments//chat/completions", "/openai/deployments/-x/embeddings", "/openai/deployments/" + strings.Repeat("a", 65) + "/embeddings",
		// Ids: empty, too long, with odd characters, dot segments, a literal pattern.
		"/v1/files/", "/v1/files//content", "/v1/files/" + long, "/v1/responses/" + long + "/cancel",
		"/v1/files/a b", "/v1/files/a%2Fb", "/v1/files/a/b/content", "/v1/responses/../cancel", "/v1/responses/./cancel",
		"/v1/responses/.hidden", "/v1/responses/_x", "/v1/files/{id}", "/v1/files/{id}/content", "/openai/files/file\u00e9",
		"/v1/batches/batch_1/", "/v1/files/file-1/content/", "/v1/responses/resp_1/input_items/x",
		// Subresources of the wrong resource, unknown resources and shapes.
		"/v1/files/file-1/cancel", "/v1/batches/batch_1/content", "/v1/responses/resp_1/content", "/v1/models/gpt-4o",
		"/v1/fine_tuning/jobs", "/v1/images/edits", "/v1/audio", "/V1/files", "/v1/Files", "//v1/files", "/v2/files",
		"/openai/v1/deployments/gpt-4o/chat/completions", "/v1/chat/completions/", "/v1/chat%2Fcompletions",
	} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			_, found := routeOf(method, path)
			assert.False(t, found, "%s %q", method, path)
		}
	}
	// Ids at the limits: 128 characters, and one.
	for _, path := range []string{"/v1/files/" + long[:128], "/openai/responses/r", "/openai/v1/batches/B.1-_x"} {
		_, found := routeOf(http.MethodGet, path)
		assert.True(t, found, path)
	}
	// A deployment named chat: the legacy completions, as the client reads it.
	rt, found := routeOf(http.MethodPost, "/openai/deployments/chat/completions")
	require.True(t, found)
	assert.Equal(t, "completions", rt.operation)
}

func TestForwardedQuery(t *testing.T) {
	for raw, want := range map[string]string{
		"":                               "",
		"api-version=2025-04-01-preview": "api-version=2025-04-01-preview",
		"limit=20&order=desc&after=msg_1&include[]=file_search_call.results": "limit=20&order=desc&after=msg_1&include[]=file_search_call.results",
		"api-key=secret&api-version=2024-10-21":                              "api-version=2024-10-21",
		"API-Key=secret":                                                     "",
		"api%2Dkey=secret&purpose=batch":                                     "purpose=batch",
		"stream=true&api-key":                                                "stream=true",
		"api-keys=1":                                                         "api-keys=1",
	} {
		assert.Equal(t, want, forwardedQuery(raw), raw)
	}
}

// The request handed to the client keeps the caller's method, path and query and the region pin, with no body for
// a request that had none; no credential passes.
func TestUpstreamRequest(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		body           string
		nilBody        bool
		wantURL        string
	}{
		{http.MethodGet, "/v1/files?purpose=batch&api-key=k", "", false, "https://gateway.invalid/v1/files?purpose=batch"},
		{http.MethodDelete, "/openai/responses/resp_1?api-version=2025-04-01-preview", "", true,
			"https://gateway.invalid/openai/responses/resp_1?api-version=2025-04-01-preview"},
		{http.MethodPost, "/openai/v1/responses/resp_1/cancel", "", false, "https://gateway.invalid/openai/v1/responses/resp_1/cancel"},
		{http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi"}`, false, "https://gateway.invalid/v1/responses"},
	} {
		r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
		if tc.nilBody {
			r.Body = nil
		}
		r.Header.Set("X-Failover-Pin-Region", "westus")
		r.Header.Set("Api-Key", "gateway-key")
		r.Header.Set("Authorization", "Bearer gateway-key")
		r.Header.Set("Cookie", "session=1")
		r.Header.Set("Content-Type", "application/json")
		rt, found := routeOf(r.Method, r.URL.Path)
		require.True(t, found, tc.target)
		req, err := upstreamRequest(context.Background(), r, rt, []byte(tc.body))
		require.NoError(t, err)
		assert.Equal(t, tc.method, req.Method)
		assert.Equal(t, tc.wantURL, req.URL.String())
		assert.Equal(t, "westus", req.Header.Get(headerPinRegion))
		assert.Equal(t, "application/json", req.Header.Get("Content-Type"))
		for _, h := range []string{"Api-Key", "Authorization", "Cookie"} {
			assert.Empty(t, req.Header.Values(h), h)
		}
		assert.Equal(t, int64(len(tc.body)), req.ContentLength)
		got, err := io.ReadAll(req.Body)
		require.NoError(t, err)
		assert.Equal(t, tc.body, string(got))
		if tc.body == "" {
			assert.Equal(t, http.NoBody, req.Body, "no body: none is sent")
		}
	}
}

// A request without a body (nil, as a handler called directly may get it) is proxied: forward reads it as empty.
func TestForwardWithoutBody(t *testing.T) {
	region := failovertest.NewRegion("eastus")
	t.Cleanup(region.Close)
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: region.URL, APIKey: region.Key}})
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	gw, err := New(client, Config{AllowNoAuth: true})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	r.Body = nil
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, r)
	assert.NotEqual(t, http.StatusBadRequest, w.Code, w.Body.String())
	assert.NotEqual(t, http.StatusInternalServerError, w.Code, w.Body.String())
}
