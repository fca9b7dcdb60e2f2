package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
)

// The fuzzed gateway's regions' keys: never in an answer.
const (
	fuzzEastKey = "eastkey-7c41d09e2b6a4f58"
	fuzzWestKey = "westkey-e93a6b0f1d2c4857"
)

// fuzzMaxBody is the fuzzed gateway's body limit: small, so that the fuzzer reaches it.
const fuzzMaxBody = 4 << 10

// fuzzReplies are what the regions answer the first request that reaches each (eastus by the fuzzer's reply modulo
// their number, westus by the quotient); later requests are served. They make the gateway answer with each of its
// statuses: a served request, a failover, a request refused as it came, an exhausted one.
var fuzzReplies = []failovertest.Reply{
	{},
	failovertest.RateLimited(30 * time.Second),
	failovertest.InternalError(),
	failovertest.Unavailable(),
	failovertest.StreamFailure(1),
	failovertest.Disconnect(),
	{Content: "one two three", StreamCutAfter: 1},
	{Content: "one two three", StreamErrorAt: 2},
	failovertest.DeploymentNotFound(),
	failovertest.Unauthorized(),
	failovertest.ContentFilter(),
	failovertest.InsufficientQuota(),
	failovertest.Malformed(),
}

// documentedStatuses are the statuses the gateway answers with (docs/gateway.md, "When no region serves", and the routes),
// and the region's own refusals, which come back as they came (the fake regions refuse with 400).
var documentedStatuses = map[int]bool{200: true, 400: true, 401: true, 404: true, 405: true, 408: true, 413: true,
	429: true, 502: true, 503: true, 504: true}

// proxiedRoutes are the gateway's documented proxied routes (the package documentation), by decoded path, with
// the methods each allows.
var proxiedRoutes = func() []struct {
	path    *regexp.Regexp
	methods []string
} {
	const (
		id       = `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`
		prefixes = `/(v1|openai/v1|openai)/`
	)
	routes := []struct {
		path    *regexp.Regexp
		methods []string
	}{{regexp.MustCompile(`^/(v1|openai/v1|openai/deployments/[A-Za-z0-9][A-Za-z0-9._-]{0,63})/` +
		`(chat/completions|completions|embeddings|images/generations|audio/(speech|transcriptions|translations))$`), []string{"POST"}}}
	for resource, methods := range map[string][]string{
		"responses": {"POST"}, "responses/ID": {"GET", "DELETE"}, "responses/ID/cancel": {"POST"},
		"responses/ID/input_items": {"GET"}, "files": {"GET", "POST"}, "files/ID": {"GET", "DELETE"},
		"files/ID/content": {"GET"}, "batches": {"GET", "POST"}, "batches/ID": {"GET"}, "batches/ID/cancel": {"POST"},
		"models": {"GET"},
	} {
		re := regexp.MustCompile("^" + prefixes + strings.Replace(resource, "ID", id, 1) + "$")
		routes = append(routes, struct {
			path    *regexp.Regexp
			methods []string
		}{re, methods})
	}
	return routes
}()

// proxied reports whether the gateway proxies path (known), and method on it (allowed).
func proxied(method, path string) (known, allowed bool) {
	for _, r := range proxiedRoutes {
		if r.path.MatchString(path) {
			return true, slices.Contains(r.methods, method)
		}
	}
	return false, false
}

// fuzzGatewaySeeds are requests as the OpenAI and Azure OpenAI SDKs, curl, scanners and broken clients send them.
var fuzzGatewaySeeds = []struct {
	method, target string
	auth           uint8 // bit 0: api-key is the gateway key; bit 1: Authorization: Bearer it; bit 2: no Content-Length
	apiKey, authz  string
	header         string
	body           string
	reply          uint8
}{
	// go-openai and the npm package, Azure shape, chat and embeddings, streaming too.
	{"POST", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", 1, "", "",
		"Content-Type: application/json\r\nUser-Agent: OpenAI/Go 1.43.0\r\nX-Ms-Client-Request-Id: 1b9d\r\n",
		`{"messages":[{"role":"user","content":"Say hello."}]}`, 0},
	{"POST", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", 1, "", "",
		"Content-Type: application/json\r\nAccept: text/event-stream\r\n",
		`{"messages":[{"role":"user","content":"Say hello."}],"stream":true}`, 4},
	{"POST", "/openai/deployments/text-embedding-3-small/embeddings?api-version=2023-05-15", 1, "", "",
		"Content-Type: application/json\r\n", `{"input":["hello"],"encoding_format":"base64"}`, 1},
	// OpenAI shape, Bearer.
	{"POST", "/v1/chat/completions", 2, "", "", "Content-Type: application/json\r\nUser-Agent: OpenAI/JS 4.77.0\r\n",
		`{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}],"stream":true,"stream_options":{"include_usage":true}}`, 6},
	{"POST", "/v1/embeddings", 2, "", "", "Content-Type: application/json\r\n", `{"model":"text-embedding-3-small","input":"hello"}`, 2},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o","messages":[]}`, 7},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o","messages":[]}`, 9},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o","messages":[]}`, 10},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o","messages":[]}`, 12},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o","messages":[]}`, 11},
	{"POST", "/openai/deployments/missing/chat/completions", 1, "", "", "", `{}`, 8},
	// Both regions failing: throttled (429 from the gateway), erring (502), missing the deployment (404).
	{"POST", "/openai/deployments/gpt-4o/chat/completions", 1, "", "", "", `{"messages":[]}`, 1 + 1*13},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o","stream":true}`, 2 + 4*13},
	{"POST", "/v1/embeddings", 2, "", "", "", `{"model":"text-embedding-3-small","input":"x"}`, 5 + 3*13},
	{"POST", "/openai/deployments/gpt-4o/embeddings", 1, "", "", "", `{"input":"x"}`, 8 + 8*13},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o","stream":true}`, 6 + 7*13},
	// Bodies that name no model, are not JSON, are empty, too large, or shorter than announced.
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"messages":[]}`, 0},
	{"POST", "/v1/chat/completions", 2, "", "", "", `not json`, 0},
	{"POST", "/v1/chat/completions", 6, "", "", "", ``, 0},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o","input":"` + strings.Repeat("x", fuzzMaxBody) + `"}`, 0},
	{"POST", "/v1/chat/completions", 6, "", "", "Content-Length: 100\r\n", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/chat/completions", 6, "", "", "Transfer-Encoding: chunked\r\n", "5\r\n{\"mod\r\n0\r\n\r\n", 0},
	{"POST", "/v1/chat/completions", 6, "", "", "Transfer-Encoding: chunked\r\n", "ff\r\n{\"mod", 0},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"a/b","messages":[]}`, 0},
	{"POST", "/v1/chat/completions", 2, "", "", "", `{"model":"../../x?y#z","messages":[]}`, 0},
	// Wrong, partial and odd credentials: another key, a prefix of it, the key with spaces, lower-case bearer,
	// Basic, both headers disagreeing.
	{"POST", "/v1/chat/completions", 0, "wrong", "", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/chat/completions", 0, "", "Bearer gwkey-3b9f17c2", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/chat/completions", 0, "", "bearer   gwkey-3b9f17c2d4e8a6  ", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/chat/completions", 0, "", "Basic Z3drZXk=", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/chat/completions", 2, "wrong", "", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/chat/completions", 1, "", "Bearer wrong", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/chat/completions", 0, " gwkey-3b9f17c2d4e8a6", "", "", `{"model":"gpt-4o"}`, 0},
	// Paths: encoded slashes, dot segments, double slashes, case, trailing slash, unicode, absolute form, other
	// operations, bad deployment names.
	{"POST", "/openai/deployments/gpt-4o%2Fx/chat/completions", 1, "", "", "", `{}`, 0},
	{"POST", "/v1/chat%2Fcompletions", 2, "", "", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/../v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/openai/deployments/../deployments/gpt-4o/chat/completions", 1, "", "", "", `{}`, 0},
	{"POST", "/openai/deployments/./chat/completions", 1, "", "", "", `{}`, 0},
	{"POST", "//v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/V1/Chat/Completions", 2, "", "", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/chat/completions/", 2, "", "", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/openai/deployments/gpt-4o\u00e9/chat/completions", 1, "", "", "", `{}`, 0},
	{"POST", "/openai/deployments/%E2%80%AEgpt/chat/completions", 1, "", "", "", `{}`, 0},
	{"POST", "http://169.254.169.254/v1/chat/completions", 2, "", "", "", `{"model":"gpt-4o"}`, 0},
	{"POST", "/v1/completions", 2, "", "", "", `{"model":"gpt-4o","prompt":"x"}`, 0},
	{"POST", "/v1/images/generations", 2, "", "", "", `{}`, 0},
	{"POST", "/openai/deployments/" + strings.Repeat("a", 65) + "/embeddings", 1, "", "", "", `{}`, 0},
	{"POST", "/openai/deployments/-x/embeddings", 1, "", "", "", `{}`, 0},
	{"POST", "/openai/deployments//embeddings", 1, "", "", "", `{}`, 0},
	// Other methods and the plain routes.
	{"GET", "/v1/chat/completions", 2, "", "", "", ``, 0},
	{"OPTIONS", "*", 0, "", "", "Origin: https://evil.example\r\n", ``, 0},
	{"HEAD", "/healthz", 0, "", "", "", ``, 0},
	{"GET", "/healthz", 0, "", "", "", ``, 0},
	{"POST", "/healthz", 0, "", "", "", `x`, 0},
	{"GET", "/status", 1, "", "", "", ``, 1},
	{"GET", "/status", 0, "", "", "", ``, 0},
	{"GET", "/metrics", 2, "", "", "", ``, 0},
	{"DELETE", "/metrics?x=1", 2, "", "", "", ``, 0},
	{"PROPFIND", "/", 0, "", "", "", ``, 0},
	{"GET", "/status?api-key=gwkey-3b9f17c2d4e8a6", 0, "", "", "", ``, 0},
	// The Responses API, files, batches and models, by id, with the wrong methods and odd ids.
	{"POST", "/openai/responses?api-version=2025-04-01-preview", 1, "", "", "Content-Type: application/json\r\n",
		`{"model":"gpt-4o","input":"Say hello.","stream":true}`, 6},
	{"GET", "/v1/responses/resp_0123abc?include[]=reasoning.encrypted_content", 2, "", "", "", ``, 0},
	{"DELETE", "/openai/v1/responses/resp_0123abc", 2, "", "", "", ``, 0},
	{"PUT", "/v1/responses/resp_0123abc", 2, "", "", "", ``, 0},
	{"POST", "/v1/responses/resp_0123abc/cancel", 2, "", "", "", ``, 0},
	{"GET", "/v1/responses/../input_items", 2, "", "", "", ``, 0},
	{"GET", "/v1/files?purpose=batch&api-key=gwkey-3b9f17c2d4e8a6", 2, "", "", "X-Failover-Pin-Region: westus\r\n", ``, 0},
	{"POST", "/v1/files", 2, "", "", "Content-Type: multipart/form-data; boundary=b\r\n",
		"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--b--\r\n", 0},
	{"GET", "/openai/files/file-abc/content?api-version=2024-10-21", 1, "", "", "", ``, 0},
	{"GET", "/v1/files/file%2Fabc/content", 2, "", "", "", ``, 0},
	{"POST", "/openai/v1/batches/batch_1/cancel", 2, "", "", "", ``, 0},
	{"GET", "/v1/models", 2, "", "", "", ``, 0},
	{"GET", "/openai/models", 0, "", "", "", ``, 0},
	{"POST", "/v1/audio/transcriptions", 2, "", "", "Content-Type: multipart/form-data; boundary=b\r\n",
		"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--b--\r\n", 0},
}

func FuzzGatewayRequest(f *testing.F) {
	for _, s := range fuzzGatewaySeeds {
		f.Add(s.method, s.target, s.auth, s.apiKey, s.authz, s.header, []byte(s.body), s.reply)
	}
	f.Fuzz(func(t *testing.T, method, target string, auth uint8, apiKey, authz, header string, body []byte, reply uint8) {
		if len(body) > 2*fuzzMaxBody || len(target) > 4<<10 || len(header) > 4<<10 {
			return
		}
		// The request as it comes off the wire; one net/http refuses before any handler runs is not the gateway's.
		var raw bytes.Buffer
		raw.WriteString(method + " " + target + " HTTP/1.1\r\nHost: gateway.example\r\n")
		if auth&1 != 0 {
			raw.WriteString("Api-Key: " + gatewayKey + "\r\n")
		}
		if auth&2 != 0 {
			raw.WriteString("Authorization: Bearer " + gatewayKey + "\r\n")
		}
		if apiKey != "" {
			raw.WriteString("Api-Key: " + apiKey + "\r\n")
		}
		if authz != "" {
			raw.WriteString("Authorization: " + authz + "\r\n")
		}
		raw.WriteString(header)
		if header != "" && !strings.HasSuffix(header, "\n") {
			raw.WriteString("\r\n")
		}
		if auth&4 == 0 {
			raw.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
		}
		raw.WriteString("\r\n")
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			return
		}
		req.RemoteAddr = "192.0.2.7:50123"

		gw, east, west, stop := fuzzGateway(t)
		defer stop()
		east.Script(fuzzReplies[int(reply)%len(fuzzReplies)])
		west.Script(fuzzReplies[int(reply)/len(fuzzReplies)%len(fuzzReplies)])
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, req)
		resp := rec.Result()
		answer := rec.Body.Bytes()

		// The status is a documented one.
		status := resp.StatusCode
		if !documentedStatuses[status] {
			t.Fatalf("%s %q: status %d, which the gateway does not document; body %s", req.Method, req.URL, status, answer)
		}

		// A success only where the gateway serves: /healthz to anyone, the rest to a caller with the key, by the
		// route's method.
		path := req.URL.Path
		admitted, strictly := presentsGatewayKey(req.Header)
		route, allowed := proxied(req.Method, path)
		if status < 300 {
			ok := path == "/healthz" && (req.Method == http.MethodGet || req.Method == http.MethodHead) ||
				admitted && req.Method == http.MethodGet && (path == "/status" || path == "/metrics") ||
				admitted && allowed
			if !ok {
				t.Fatalf("%s %q (key presented: %v): %d", req.Method, req.URL, admitted, status)
			}
		}
		known := route || path == "/healthz" || path == "/status" || path == "/metrics"
		switch {
		case !known && status != http.StatusNotFound:
			t.Fatalf("%s %q: %d for a path the gateway does not serve", req.Method, req.URL, status)
		case status == http.StatusUnauthorized && (strictly || path == "/healthz"):
			t.Fatalf("%s %q: 401 with the gateway key (api-key %q, authorization %q)", req.Method, req.URL,
				req.Header.Values("Api-Key"), req.Header.Values("Authorization"))
		case status == http.StatusUnauthorized && resp.Header.Get("Www-Authenticate") == "":
			t.Fatalf("401 without WWW-Authenticate")
		case status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "":
			t.Fatalf("405 without Allow")
		case status == http.StatusTooManyRequests && !positiveSeconds(resp.Header.Get("Retry-After")):
			t.Fatalf("429 with Retry-After %q", resp.Header.Get("Retry-After"))
		case status == http.StatusRequestEntityTooLarge && len(body) <= fuzzMaxBody && req.ContentLength <= fuzzMaxBody:
			t.Fatalf("413 for a body of %d bytes (Content-Length %d)", len(body), req.ContentLength)
		}

		// An error answer is JSON with an "error" object, in the shape both kinds of client parse.
		if status >= 400 {
			var e struct {
				Error *struct {
					Message *string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(answer, &e); err != nil || e.Error == nil || e.Error.Message == nil {
				t.Fatalf("%d with a body that is not an error object (%v): %q", status, err, answer)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("%d with Content-Type %q", status, ct)
			}
		}

		// No key in the answer: never a region's; the gateway's only when the caller put it elsewhere than in
		// its credentials (the method, the path, the body, other headers are its own to see again).
		var whole bytes.Buffer
		_ = resp.Header.Write(&whole)
		whole.Write(answer)
		for _, key := range []string{fuzzEastKey, fuzzWestKey} {
			if mentions(whole.String(), key) {
				t.Fatalf("the answer shows region key %s:\n%s", key, whole.String())
			}
		}
		if !mentions(method+target+header+string(body), gatewayKey) && mentions(whole.String(), gatewayKey) {
			t.Fatalf("the answer shows the gateway key:\n%s", whole.String())
		}

		// Nothing of the caller's credentials went upstream (unless the caller put the key in a header that goes
		// upstream, such as User-Agent), and each region got its own key.
		forwarded := false
		for _, k := range []string{"Content-Type", "Accept", "User-Agent", "X-Ms-Client-Request-Id"} {
			forwarded = forwarded || mentions(strings.Join(req.Header.Values(k), " "), gatewayKey)
		}
		for _, s := range []*failovertest.Server{east, west} {
			for _, c := range s.Calls() {
				for k, vs := range c.Header {
					for _, v := range vs {
						if mentions(v, gatewayKey) && !forwarded {
							t.Fatalf("%s got the gateway key in %s: %q", s.Name, k, v)
						}
					}
				}
				if got := c.Header.Get("Api-Key"); got != s.Key || len(c.Header.Values("Api-Key")) != 1 {
					t.Fatalf("%s got api-key %q", s.Name, c.Header.Values("Api-Key"))
				}
				if c.Header.Get("Authorization") != "" {
					t.Fatalf("%s got an Authorization header: %q", s.Name, c.Header.Values("Authorization"))
				}
			}
		}
	})
}

// fuzzGateway starts two fake regions on an in-memory network (eastus first), a client of them and a gateway in
// front of it that admits gatewayKey.
func fuzzGateway(t *testing.T) (gw *gateway.Gateway, east, west *failovertest.Server, stop func()) {
	network := failovertest.NewNetwork()
	east = failovertest.NewRegion("eastus", failovertest.OnNetwork(network), failovertest.WithKey(fuzzEastKey))
	west = failovertest.NewRegion("westus", failovertest.OnNetwork(network), failovertest.WithKey(fuzzWestKey))
	stop = func() {
		east.Close()
		west.Close()
		network.Close()
	}
	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: east.URL, APIKey: east.Key},
		{Name: "westus", Endpoint: west.URL, APIKey: west.Key},
	}, failover.WithHTTPClient(network.Client()), failover.WithMaxWait(0), failover.WithAttemptTimeout(10*time.Second))
	if err != nil {
		stop()
		t.Fatalf("failover.New: %v", err)
	}
	gw, err = gateway.New(client, gateway.Config{Keys: []string{gatewayKey}, MaxBodyBytes: fuzzMaxBody,
		RequestTimeout: 20 * time.Second, BodyReadTimeout: 5 * time.Second})
	if err != nil {
		stop()
		t.Fatalf("gateway.New: %v", err)
	}
	return gw, east, west, stop
}

// presentsGatewayKey reports whether h carries the gateway key in any api-key header or any Authorization: Bearer
// (admitted), and whether it does as docs/gateway.md says the gateway reads it (strictly): the api-key header if there
// is one, else a bearer token.
func presentsGatewayKey(h http.Header) (admitted, strictly bool) {
	bearer := func(v string) string {
		if len(v) > 7 && strings.EqualFold(v[:7], "Bearer ") {
			return strings.TrimSpace(v[7:])
		}
		return ""
	}
	for _, v := range h.Values("Api-Key") {
		admitted = admitted || v == gatewayKey
	}
	for _, v := range h.Values("Authorization") {
		admitted = admitted || bearer(v) == gatewayKey
	}
	if v := h.Get("Api-Key"); v != "" {
		return admitted, v == gatewayKey
	}
	return admitted, bearer(h.Get("Authorization")) == gatewayKey
}

// mentions reports whether s holds key, also once percent-decoded.
func mentions(s, key string) bool {
	if u, err := url.PathUnescape(s); err == nil && strings.Contains(u, key) {
		return true
	}
	return strings.Contains(s, key)
}

func positiveSeconds(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n > 0
}
