package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aoai-failover/failover"
)

// Defaults for the zero values of Config's fields.
const (
	DefaultMaxBodyBytes    = 16 << 20
	DefaultMaxUploadBytes  = 25 << 20
	DefaultRequestTimeout  = 10 * time.Minute
	DefaultBodyReadTimeout = 30 * time.Second
)

// Config configures a Gateway.
type Config struct {
	// Keys are the gateway keys callers authenticate with, in an api-key header (as Azure clients send it) or as
	// Authorization: Bearer (as OpenAI clients do). They are compared in constant time and never sent upstream
	// or logged. New refuses an empty list unless AllowNoAuth is set.
	Keys []string
	// AllowNoAuth serves every caller without a key. It is for a gateway only this machine can reach;
	// cmd/aoai-gateway allows it only on a loopback address. False by default.
	AllowNoAuth bool
	// MaxBodyBytes caps a request body: a larger one gets 413. Zero means DefaultMaxBodyBytes (16 MiB).
	MaxBodyBytes int64
	// MaxUploadBytes caps the body of an upload in place of MaxBodyBytes: an audio transcription or translation
	// (25 MB is the audio API's own limit) and a file upload (POST files). Zero means DefaultMaxUploadBytes
	// (25 MiB); a gateway that uploads larger batch files raises it. The gateway holds a body in memory while
	// the client sends it, so the limit also bounds what each upload costs.
	MaxUploadBytes int64
	// RequestTimeout bounds one request from its arrival to the last byte of its answer, streams included; a
	// request that has no answer by then gets 504. Zero means DefaultRequestTimeout (10 min).
	RequestTimeout time.Duration
	// BodyReadTimeout bounds reading a request's body, against callers that send it slowly on purpose. Zero means
	// DefaultBodyReadTimeout (30 s).
	BodyReadTimeout time.Duration
	// MaxInFlight bounds the requests being proxied at once (not /healthz, /status and /metrics, nor requests
	// refused before a region is asked): one more is answered 503 at once, with Retry-After and the code
	// gateway_overloaded. Zero means DefaultMaxInFlight (1024).
	MaxInFlight int
	// MaxHeldBytes bounds the bytes held at once for request bodies and buffered (non-streaming) answers. A body
	// of known length reserves its length before it is read; a chunked one reserves its buffer as it grows.
	// A request whose body does not fit is answered 503 at once, as over MaxInFlight, and so is one whose
	// answer does not: the client asks for an answer's bytes before it reads it (failover.WithAnswerBudget), and
	// they stay counted until it is written. Zero means DefaultMaxHeldBytes (192 MiB), or half the Go runtime's memory
	// limit (GOMEMLIMIT, debug.SetMemoryLimit) when that is smaller; never less than MaxBodyBytes and
	// MaxUploadBytes. Without a memory limit the heap may grow to twice what is live before it is collected.
	MaxHeldBytes int64
	// MaxConnections bounds the connections open at once on a listener that Gateway.Listener wrapped: Accept
	// waits for one to close. It does not apply to a listener Listener did not wrap. Zero means
	// DefaultMaxConnections (4096).
	MaxConnections int
	// Logger gets one line per request (route, status, region, attempts, duration; never a key or a body).
	// Nil logs nothing.
	Logger *slog.Logger
}

// Gateway is an http.Handler that serves a failover.Client to callers that speak the Azure OpenAI or the OpenAI
// API, on the routes the package documentation lists; every other path is 404, as the gateway is not an open
// proxy.
//
// Bodies pass through as they came; the client chooses region, deployment and upstream credentials, and
// api-version: a classic region's own, or the caller's when it is newer. When no region serves a request, the
// answer is failover.AnswerError's (429, 503, 404 or 502, with x-should-retry: false), and X-Failover-Attempts
// says how many regions were asked; X-Failover-Region names the region whose answer it is, when one answered.
type Gateway struct {
	client  *failover.Client
	keys    keyring
	open    bool
	cfg     Config
	metrics *metrics
	budget  *budget
	conns   *connTable   // the connections its Listeners accepted
	taken   takenStreams // the streams on connections it took over
}

// New returns a gateway in front of client. It refuses a config without keys unless AllowNoAuth is set.
func New(client *failover.Client, cfg Config) (*Gateway, error) {
	if client == nil {
		return nil, errors.New("gateway: client is nil")
	}
	for i, k := range cfg.Keys {
		if strings.TrimSpace(k) == "" || strings.TrimSpace(k) != k {
			return nil, fmt.Errorf("gateway: Keys[%d]: empty or with surrounding whitespace; expected a key such as one from openssl rand -hex 32", i)
		}
	}
	if len(cfg.Keys) == 0 && !cfg.AllowNoAuth {
		return nil, errors.New("gateway: Keys: none given; callers must authenticate (set AllowNoAuth only for a gateway no other machine can reach)")
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxUploadBytes < 0 || cfg.RequestTimeout < 0 || cfg.BodyReadTimeout < 0 ||
		cfg.MaxInFlight < 0 || cfg.MaxHeldBytes < 0 || cfg.MaxConnections < 0 {
		return nil, errors.New("gateway: MaxBodyBytes, MaxUploadBytes, RequestTimeout, BodyReadTimeout, MaxInFlight, MaxHeldBytes and MaxConnections must not be negative (0 means the default)")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.BodyReadTimeout == 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if err := limitDefaults(&cfg); err != nil {
		return nil, err
	}
	g := &Gateway{client: client, keys: newKeyring(cfg.Keys), open: len(cfg.Keys) == 0, cfg: cfg, metrics: newMetrics(),
		budget: &budget{maxInFlight: int64(cfg.MaxInFlight), maxHeld: cfg.MaxHeldBytes}, conns: &connTable{}}
	g.cfg.Keys = nil // only the digests are kept
	return g, nil
}

// timeoutAnswerGrace is how long past its RequestTimeout a request's answer may still be written.
const timeoutAnswerGrace = 5 * time.Second

// logicalHost is the host of the requests handed to the client, which replaces it for every backend.
const logicalHost = "gateway.invalid"

// ServeHTTP serves one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every body, also one the gateway refuses unread (net/http drains it after the answer), must arrive within
	// BodyReadTimeout: a caller without a key must not hold a connection by trickling one. A proxied request's
	// deadline is lifted once its body is in.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(g.cfg.BodyReadTimeout))
	switch r.URL.Path {
	case "/healthz":
		if g.allowMethod(w, r, http.MethodGet, http.MethodHead) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, "ok\n")
		}
		return
	case "/status":
		if g.allowMethod(w, r, http.MethodGet) && g.authorize(w, r) {
			status := struct {
				Regions []failover.RegionHealth `json:"regions"`
				Store   *storeStatus            `json:"store,omitempty"`
			}{Regions: g.client.Health()}
			if shared, reachable := g.client.Sharing(); shared {
				status.Store = &storeStatus{Reachable: reachable}
			}
			writeJSON(w, status)
		}
		return
	case "/metrics":
		if g.allowMethod(w, r, http.MethodGet) && g.authorize(w, r) {
			var text bytes.Buffer
			g.metrics.write(&text, g.client, g.budget) // under the metrics lock: never written to the caller from there
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			w.Header().Set("Content-Length", strconv.Itoa(text.Len()))
			_, _ = w.Write(text.Bytes())
		}
		return
	}
	rt, ok := routeOf(r.Method, r.URL.Path)
	if !ok {
		g.refused(r, http.StatusNotFound, refusedNotFound)
		writeError(w, http.StatusNotFound, "404", notFoundMessage)
		return
	}
	if g.allowMethod(w, r, rt.methods...) && g.authorize(w, r) {
		g.proxy(w, r, rt)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "500", "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	_, _ = w.Write(append(data, '\n'))
}

// proxy sends the request through the client and passes the answer back.
func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, rt route) {
	start := time.Now()
	if limit := g.bodyLimit(rt); r.ContentLength > limit {
		// Refused before it counts in flight: a body too large is never served, and must not be told to retry.
		g.refused(r, http.StatusRequestEntityTooLarge, refusedTooLarge)
		closeIfUnread(w, r)
		writeError(w, http.StatusRequestEntityTooLarge, "request_too_large",
			"request body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
		return
	}
	if !g.budget.enter() {
		// Counted with the requests, as one shed for bytes is (logged at Debug only: see shed).
		g.metrics.request(rt.api, rt.operation, g.shed(w, r, shedInFlight), time.Since(start), nil)
		return
	}
	ex := &exchange{start: start, rt: rt, method: r.Method, path: r.URL.Path}
	ctx := ex.begin(r.Context(), g.cfg.RequestTimeout)
	defer func() {
		if !ex.takenOver {
			ex.release(g.budget) // also after a panic
		}
	}()
	rc := http.NewResponseController(w)
	// A slow reader of the answer must not hold the gateway past the request's time either; the grace leaves
	// room to write the 504 of a request whose time ran out. (Not every ResponseWriter supports deadlines: then
	// the context alone bounds the request.)
	_ = rc.SetWriteDeadline(start.Add(g.cfg.RequestTimeout + timeoutAnswerGrace))

	status := g.forward(ctx, w, r, rc, ex)
	if !ex.takenOver { // else the stream ends the request when it ends
		g.account(ctx, ex, status)
	}
}

// bodyLimit is the most a request body of route rt may be.
func (g *Gateway) bodyLimit(rt route) int64 {
	if rt.upload {
		return g.cfg.MaxUploadBytes
	}
	return g.cfg.MaxBodyBytes
}

// forward makes the request and writes the answer, returning its status.
func (g *Gateway) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, rc *http.ResponseController, ex *exchange) int {
	rt := ex.rt
	limit := g.bodyLimit(rt)
	// Read the body whole, under the deadline ServeHTTP set, before anything goes upstream: the deadline must be
	// lifted before the (long) wait for the answer (net/http lifts it too once the body is read to its end), and
	// the client needs the body for every attempt anyway. A request without one (a GET, a DELETE, a cancel) reads
	// as empty: net/http gives it http.NoBody, a handler called directly may give it nil. A body that failed
	// keeps the deadline: whatever net/http still reads of it is bounded too.
	var in io.Reader = r.Body
	if r.Body != nil && r.Body != http.NoBody {
		in = http.MaxBytesReader(w, r.Body, limit)
	}
	body, held, err := g.readBody(in, r.ContentLength, limit)
	ex.held = held
	if err != nil {
		return g.bodyError(ctx, w, r, err)
	}
	_ = rc.SetReadDeadline(time.Time{})

	// A buffered answer is held from the moment the client starts to read it: the client asks the budget first.
	ctx = failover.WithAnswerBudget(ctx, ex.answers.room(g.budget))
	req, err := upstreamRequest(failover.WithTrace(ctx, &failover.Trace{AttemptDone: ex.add}), r, rt, body)
	if err != nil {
		return writeAnswer(w, failover.ErrorAnswer{Status: http.StatusBadRequest, Code: "invalid_request", Message: err.Error()})
	}
	resp, err := doShallow(g.client, req, body) // on a stack the stream does not keep: see onFreshStack
	// How many regions were asked; 0 when every one rested.
	w.Header().Set("X-Failover-Attempts", strconv.Itoa(len(ex.attempts)))
	if err != nil { // the request's context ended
		return writeAnswer(w, failover.AnswerError(ctx, err))
	}
	defer func() {
		if !ex.takenOver {
			resp.Body.Close()
		}
	}()
	if ex.answers.refused.Load() && resp.StatusCode == http.StatusServiceUnavailable {
		return g.shedAnswer(w, r, ex.answers.tooLarge.Load()) // the client's 503 for an answer with no room, as the gateway's
	}
	// A buffered answer stays counted (answers.held) until it is written; the body too, which the answer's
	// Request keeps reachable until then. A stream or a download is passed on as it comes, and holds nothing.

	h := w.Header()
	copyResponseHeader(h, resp.Header)
	if n := len(ex.attempts); n > 0 && answeredBy(ex.attempts[n-1]) {
		h.Set("X-Failover-Region", ex.attempts[n-1].Region)
	}
	if !isEventStream(resp.Header) {
		if resp.ContentLength >= 0 {
			h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return resp.StatusCode
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // tell nginx and the like in front not to hold events back
	if g.takeOver(ctx, w, r, resp, ex) {
		return resp.StatusCode
	}
	// WriteHeader and Flush, on a stack the stream does not keep: see onFreshStack.
	beginStream(w, rc, resp.StatusCode)
	if passStream(ctx, answerWriter{w, rc}, resp.Body, rt.typed) {
		g.metrics.streamCuts.Add(1)
	}
	return resp.StatusCode
}

func isEventStream(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "text/event-stream")
}

// upstreamRequest is the request the client is handed for r, whose body was read: r's method, path and query
// (but for an api-key parameter, see forwardedQuery) at the logical host, with the headers a region may see. The
// client keeps the caller's api-version where it is newer than a region's.
func upstreamRequest(ctx context.Context, r *http.Request, rt route, body []byte) (*http.Request, error) {
	target := "https://" + logicalHost + rt.path
	if q := forwardedQuery(r.URL.RawQuery); q != "" {
		target += "?" + q
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	copyRequestHeader(req.Header, r.Header)
	return req, nil
}

// answeredBy reports whether the answer is the one a, the last attempt reported, got: it served the request, or
// the region refused the request itself (with a status: a request that could not be sent has none). Otherwise the
// client answered for the regions (see failover.RoundTrip).
func answeredBy(a failover.Attempt) bool {
	return a.Outcome == failover.OutcomeServed || a.Outcome == failover.OutcomeReturned && a.Status != 0
}

// writeAnswer answers with a, as failover.AnswerError decided it, and returns its status.
func writeAnswer(w http.ResponseWriter, a failover.ErrorAnswer) int {
	a.Write(w)
	return a.Status
}

// writeError answers with status and an error body; code is the error's machine-readable code.
func writeError(w http.ResponseWriter, status int, code, message string) {
	failover.ErrorAnswer{Status: status, Code: code, Message: message}.Write(w)
}

// forwardedRequestHeaders are the caller's headers the upstream request carries; the client adds the backend's
// credentials. X-Failover-Pin-Region is for the client, which sends files and batches to the region it names.
// Nothing else passes: not the caller's key, cookies, or Accept-Encoding (the client's transport negotiates
// compression itself).
var forwardedRequestHeaders = []string{"Content-Type", "Accept", "User-Agent", "X-Ms-Client-Request-Id", headerPinRegion}

func copyRequestHeader(dst, src http.Header) {
	for _, k := range forwardedRequestHeaders {
		if v, ok := src[k]; ok {
			dst[k] = v
		}
	}
}

// copyResponseHeader passes on the upstream headers a caller can use: the content type, rate-limit and retry
// headers, request ids. Hop-by-hop headers, cookies and the rest stay behind; Content-Length is set by the
// gateway.
func copyResponseHeader(dst, src http.Header) {
	for k, v := range src {
		if passResponseHeader(k) {
			dst[k] = v
		}
	}
}

func passResponseHeader(k string) bool {
	switch k {
	case "Content-Type", "Retry-After", "Retry-After-Ms", "X-Request-Id", "Apim-Request-Id", "X-Should-Retry":
		return true
	}
	for _, prefix := range []string{"X-Ratelimit-", "X-Ms-", "Openai-", "Azureml-"} {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// storeStatus is the /status view of the store the client shares through.
type storeStatus struct {
	Reachable bool `json:"reachable"`
}
