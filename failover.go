package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// backend is one place a request can be sent: an Azure region or the public OpenAI API.
type backend struct {
	name        string
	endpoint    string // canonical base URL: two backends with the same one are the same resource
	id          string // the backend's name in a Store (backendID)
	azure       bool
	scheme      string
	host        string
	path        string // base path without a trailing slash; may be empty
	query       string // api-version=…, Azure only
	authHeader  string // canonical header name
	authValue   []string
	secret      string       // what must never leave: the key, scrubbed from upstream error bodies
	tokens      *tokenSource // the Entra ID credential's tokens, for the Authorization header; nil with a key
	deployments map[string]string
	declared    bool // deployments lists every model the backend has: others never go to it
	priority    int
	weight      int
	health      health
}

// serves reports whether the backend has model, as far as its configuration says. An Azure region never gets a
// model that cannot be its deployment's name: it is a segment of the request's path.
func (b *backend) serves(model string) bool {
	if !b.declared {
		return !b.azure || strings.IndexByte(model, '/') < 0
	}
	_, ok := b.deployments[model]
	return ok
}

// deployment is where a request for model goes on this backend.
func (b *backend) deployment(model string) string {
	if !b.azure {
		return model
	}
	if d, ok := b.deployments[model]; ok {
		return d
	}
	return model
}

// url is the address of operation op (such as "/chat/completions") for deployment on this backend.
func (b *backend) url(op, deployment string) *url.URL {
	u := &url.URL{Scheme: b.scheme, Host: b.host}
	if !b.azure {
		u.Path = b.path + op
		return u
	}
	u.Path = b.path + "/openai/deployments/" + deployment + op
	if escaped := url.PathEscape(deployment); escaped != deployment {
		u.RawPath = b.path + "/openai/deployments/" + escaped + op
	}
	u.RawQuery = b.query
	return u
}

// engine sends one logical OpenAI request to one backend after another. It is an HTTP doer: go-openai's client
// builds the logical request (any base URL, the operation at the end of its path, the model in its body) and the
// engine rewrites address, deployment, api-version and credentials for each backend it tries. It remembers what
// each backend's answers said (see health) and passes over the backends that rest.
type engine struct {
	backends       []*backend // sorted by priority, the fallback last
	tiers          []*tier    // the regions by priority, for strategies other than StrategyOrdered
	fallback       *backend
	strategy       Strategy
	client         *http.Client
	attemptTimeout time.Duration
	maxWait        time.Duration
	rests          restPolicy
	logger         *slog.Logger
	onAttempt      func(context.Context, Attempt)
	share          *sharing // nil without a Store
	steering       bool     // WithQuotaSteering, with two regions or more to steer between
	hedger         *hedger  // nil without WithHedging
}

// operations are the calls the engine can route: each exists on every Azure deployment.
var operations = []string{"/chat/completions", "/completions", "/embeddings"}

func operationOf(path string) (string, bool) {
	for _, op := range operations {
		if strings.HasSuffix(path, op) {
			return op, true
		}
	}
	return "", false
}

const (
	// maxErrorBody bounds what is read of an error answer; Azure's are well under 10 KiB.
	maxErrorBody = 1 << 20
	// maxBody bounds a request body and a successful non-streaming answer (a large embeddings batch is tens of
	// MiB).
	maxBody = 256 << 20
	// maxPasses bounds the passes over the backends that one request makes, waiting for rests (or for probes, in
	// steps of probePoll) between them.
	maxPasses = 40
)

var errBodyTooLarge = errors.New("body too large")

// Do sends req to the backends in order, passing over those that rest or lack the model, and returns the first
// answer that settles it: a success, or a refusal of the request itself (such as 400), which goes back as it
// came. When every backend failed or rests, and the soonest rest ends before the request's deadline and within
// WithMaxWait of the request's start, it waits for it and goes round again. Otherwise it returns an
// *ExhaustedError, or the context's error, wrapped, when the context ends first.
func (e *engine) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	op, ok := operationOf(req.URL.Path)
	if !ok {
		closeBody(req)
		return nil, fmt.Errorf("failover: cannot route %s %s: only chat completions, completions and embeddings are supported", req.Method, req.URL.Path)
	}
	body, model, err := replayable(req)
	if err != nil {
		return nil, err
	}
	// When the model came from an Azure path rather than the body, the OpenAI fallback gets the body with the
	// model written in, since the public API reads it from there; made when the fallback is tried.
	pathModel := model == ""
	if pathModel {
		if model = pathDeployment(req.URL.Path, op); model == "" {
			return nil, errNoModelInRequest
		}
	}
	if model == "." || model == ".." {
		// It becomes a path segment of an Azure URL, where it would climb out of /openai/deployments/.
		return nil, fmt.Errorf("failover: model %q is not a deployment name", model)
	}
	c := call{e: e, ctx: ctx, req: req, op: op, model: model, body: body, pathModel: pathModel,
		trace: ContextTrace(ctx)}
	if e.steering || e.hedger != nil {
		shape(&c)
	}
	if e.hedger != nil {
		e.hedger.fund()
	}
	var buf [8]*backend
	waitLimit := time.Now().Add(e.maxWait) // no wait may end later: the request has waited enough by then
	if deadline, ok := ctx.Deadline(); ok && deadline.Before(waitLimit) {
		waitLimit = deadline
	}
	for pass := 1; ; pass++ {
		if e.share != nil {
			e.share.sync(ctx) // what other replicas learned, also while this request waited
		}
		c.passedOver, c.soonest = c.passedOver[:0], time.Time{}
		order, roomIn := e.order(buf[:0], model, c.cost)
		c.next = 0
		if roomIn > 0 && pass < maxPasses && !e.fallbackServes(model) && !time.Now().Add(roomIn).After(waitLimit) {
			// No region has room: a request sent now would pay for a 429. Wait for the first to have it, as for
			// a rest; with an OpenAI fallback, the regions are tried as they are, and the fallback after them.
			if err := c.wait(roomIn); err != nil {
				return nil, err
			}
			continue
		}
		for {
			b, t, ok, err := c.admitNext(order, false)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			var resp *http.Response
			var done bool
			if c.mayHedge(order, b) {
				resp, done, err = c.race(order, b, t)
			} else {
				resp, done, err = c.one(b, t)
			}
			if done {
				return resp, err
			}
		}
		soonest := c.soonest
		if soonest.IsZero() || soonest.After(waitLimit) || !time.Now().Before(waitLimit) || pass == maxPasses {
			return nil, e.exhausted(model, c.attempts, c.passedOver, soonest)
		}
		if err := c.wait(time.Until(soonest)); err != nil {
			return nil, err
		}
	}
}

// fallbackServes reports whether the OpenAI fallback can take a request for model.
func (e *engine) fallbackServes(model string) bool {
	return e.fallback != nil && e.fallback.serves(model)
}

// earliest is the earlier of two times, where zero means never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// sleep waits for d or until ctx ends, and reports whether it waited the whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func canceled(ctx context.Context, attempts int) error {
	return fmt.Errorf("failover: request ended by its context (attempts made: %d): %w", attempts, ctx.Err())
}

// exhausted builds the error for a request no backend served, with what each backend it did not try was doing.
func (e *engine) exhausted(model string, attempts []Attempt, passedOver []Skip, retryAt time.Time) error {
	err := &ExhaustedError{Attempts: attempts, Model: model, RetryAt: retryAt}
	for _, b := range e.backends {
		if slices.ContainsFunc(attempts, func(a Attempt) bool { return a.Region == b.name }) {
			continue
		}
		if !b.serves(model) {
			reason := "model not in its declared deployments"
			if !b.declared {
				reason = "model name cannot be an Azure deployment name"
			}
			err.Skipped = append(err.Skipped, Skip{Region: b.name, State: StateMissing, Reason: reason})
			continue
		}
		if i := slices.IndexFunc(passedOver, func(s Skip) bool { return s.Region == b.name }); i >= 0 {
			err.Skipped = append(err.Skipped, passedOver[i])
		}
	}
	return err
}

// passedOver says why a request did not try b for model at now, as it was then: a short rest may have ended
// by the time the request gives up, and the error must still say why the backend was not tried.
func (b *backend) passedOver(model string, now time.Time) Skip {
	s, ok := b.health.skipped(model, now)
	if !ok {
		// The store said another client probes it, or that another's probe was just served while a rest of
		// this client's own still holds.
		s = Skip{State: StateProbing, Reason: "another client sharing the store probes it"}
	}
	s.Region = b.name
	return s
}

// attempt makes one attempt with ticket t and settles it. The ticket is released even if the attempt panics (in
// a caller's transport or GetBody), so that no backend is left probing forever.
func (e *engine) attempt(ctx context.Context, req *http.Request, b *backend, op, model string, body requestBody, t ticket) (*http.Response, Attempt, time.Time) {
	settled := false
	defer func() {
		if !settled {
			e.release(ctx, b, model, t)
		}
	}()
	resp, a, v := e.try(ctx, req, b, op, model, body)
	until := e.settle(ctx, b, model, t, &a, v)
	settled = true
	s, stream := bodyOf(resp).(*streamBody)
	if stream {
		s.onCut = func() { e.streamCut(ctx, b, model) }
	}
	if e.hedger != nil && a.Outcome == OutcomeServed {
		b.health.sampleLatency(latencyKind{model: model, stream: stream}, a.Duration)
	}
	return resp, a, until
}

func bodyOf(resp *http.Response) io.ReadCloser {
	if resp == nil {
		return nil
	}
	return resp.Body
}

// streamCut records that a stream served by b broke off after its first content: a failure of b for model,
// unless the caller ended it.
func (e *engine) streamCut(ctx context.Context, b *backend, model string) {
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	r, _ := b.health.failed(model, ticket{start: now}, http.StatusOK, verdict{kind: restFailing}, &e.rests, now)
	if e.share != nil && !r.until.IsZero() {
		e.share.save(ctx, b, model, r, ticket{})
	}
}

// release ends t's probes without a verdict on the backend.
func (e *engine) release(ctx context.Context, b *backend, model string, t ticket) {
	b.health.release(t)
	if e.share != nil {
		e.share.release(ctx, b, model, t)
	}
}

// settle records an attempt's verdict in the backend's health, sets the rest it caused on a, logs a fault, and
// returns when the rest ends (zero when the backend does not rest).
func (e *engine) settle(ctx context.Context, b *backend, model string, t ticket, a *Attempt, v verdict) time.Time {
	if t.quota.cost > 0 && a.Header != nil {
		b.health.heard(model, a.Status, a.Header, t.quota, v.wait, time.Now())
	}
	switch {
	case a.Outcome == OutcomeCanceled, a.Outcome == OutcomeReturned && a.Status == 0:
		e.release(ctx, b, model, t) // no verdict on the backend
		return time.Time{}
	case a.Outcome == OutcomeServed, a.Outcome == OutcomeReturned:
		b.health.succeeded(model, t, a.Outcome == OutcomeServed, a.Duration, time.Now())
		if e.share != nil {
			e.share.recovered(ctx, b, model, t)
		}
		return time.Time{}
	}
	now := time.Now()
	r, logFault := b.health.failed(model, t, a.Status, v, &e.rests, now)
	var d time.Duration
	if !r.until.IsZero() {
		d = max(r.until.Sub(now), 0)
	}
	if e.share != nil {
		if r.until.IsZero() {
			e.share.release(ctx, b, model, t)
		} else {
			e.share.save(ctx, b, model, r, t)
		}
	}
	a.Rest = d
	if logFault && e.logger != nil {
		// Loud, and once per episode: a key or role that fails in one region is a configuration fault, and the
		// region stays out of service until it is fixed.
		msg := "failover: region refused its credentials or account; resting it"
		if a.Status == 0 {
			msg = "failover: region's Entra ID credential cannot give a token here; resting it"
		}
		e.logger.LogAttrs(ctx, slog.LevelError, msg, slog.String("region", a.Region), slog.Int("status", a.Status),
			slog.Duration("rest", d), slog.String("error", describeCause(a.Err)))
	}
	if v.kind == restMissing {
		return time.Time{} // not coming back soon enough to wait for
	}
	return now.Add(d)
}

// try makes one attempt at one backend.
func (e *engine) try(ctx context.Context, orig *http.Request, b *backend, op, model string, body requestBody) (*http.Response, Attempt, verdict) {
	start := time.Now()
	a := Attempt{Region: b.name, Deployment: b.deployment(model)}
	// The attempt timeout is a timer rather than a context deadline so that it can be stopped once a stream has
	// started: it bounds the wait for a stream's first content, not the stream.
	actx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(e.attemptTimeout, func() { cancel(ErrAttemptTimeout) })
	resp, outcome, v := e.exchange(actx, orig, b, b.url(op, a.Deployment), body)
	stopped := timer.Stop()
	a.Duration, a.Outcome, a.Err = time.Since(start), outcome, v.cause
	var stream *streamBody
	if resp != nil {
		a.Status, a.Header = resp.StatusCode, resp.Header
		stream, _ = resp.Body.(*streamBody) // exchange hands a served stream over as a streamBody
	}
	switch {
	case stream != nil && stopped:
		stream.cancel = func() { cancel(nil) }
		return resp, a, v
	case stream != nil:
		// The timeout fired as the stream began (its callback may not have run yet): the body is, or will be, cut.
		resp.Body.Close()
		cancel(nil)
		v = verdict{cause: fmt.Errorf("%w after %s", ErrAttemptTimeout, e.attemptTimeout), kind: restFailing}
		a.Outcome, a.Err = OutcomeFailedOver, v.cause
		return nil, a, v
	case outcome != OutcomeFailedOver:
		cancel(nil)
		return resp, a, v
	}
	cancel(nil)
	switch {
	case ctx.Err() != nil:
		a.Err, a.Outcome = ctx.Err(), OutcomeCanceled
	case context.Cause(actx) == ErrAttemptTimeout:
		timeout := fmt.Errorf("%w after %s", ErrAttemptTimeout, e.attemptTimeout)
		if errors.Is(v.cause, ErrCredential) {
			// The token did not come in time: the region has no token, whatever the model.
			v = verdict{cause: &CredentialError{Region: b.name, Err: timeout}, kind: restNoToken}
		} else {
			v = verdict{cause: timeout, kind: restFailing}
		}
		a.Err = v.cause
	}
	return nil, a, v
}

// exchange sends one attempt and reads its answer. It returns the response when the answer settles the request
// (served or returned), or the verdict on the failure when the next backend should be tried.
func (e *engine) exchange(ctx context.Context, orig *http.Request, b *backend, u *url.URL, body requestBody) (*http.Response, Outcome, verdict) {
	auth := b.authValue
	if b.tokens != nil {
		var err error
		if auth, err = b.tokens.authorization(ctx); err != nil {
			return nil, OutcomeFailedOver, verdict{cause: &CredentialError{Region: b.name, Err: err}, kind: credentialRest(err)}
		}
	}
	req, err := attemptRequest(ctx, orig, b, u, body, auth)
	if err != nil {
		// The caller's body could not be replayed: no backend is at fault, and no other would fare better.
		return nil, OutcomeReturned, verdict{cause: err, final: true}
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, OutcomeFailedOver, verdict{cause: err, kind: restUnreachable}
	}
	resp.Request = orig // the attempt's request carries the key
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if isEventStream(resp) {
			// Read, still under the attempt timeout, up to the stream's first content: a stream that fails or
			// ends before it is this backend's failure, and the next one can still serve it unseen.
			stream, err := openStream(resp.Body, e.scrub)
			if err != nil {
				resp.Body.Close()
				e.scrubHeader(resp.Header)
				return resp, OutcomeFailedOver, verdict{cause: err, kind: restFailing}
			}
			resp.Body = stream
			return resp, OutcomeServed, verdict{}
		}
		// Reading the whole answer here keeps it under the attempt timeout and turns a cut or garbled answer
		// into a failover instead of a decoding error for the caller.
		answer, err := bufferBody(resp, maxBody, true)
		if err != nil {
			e.scrubHeader(resp.Header)
			return resp, OutcomeFailedOver, verdict{cause: err, kind: restFailing}
		}
		if !looksLikeObject(answer.data) {
			e.scrubHeader(resp.Header)
			return resp, OutcomeFailedOver, verdict{kind: restFailing,
				cause: fmt.Errorf("malformed answer: %d bytes that are not a JSON object", len(answer.data))}
		}
		return resp, OutcomeServed, verdict{}
	}
	e.scrubHeader(resp.Header)
	answer, err := bufferBody(resp, maxErrorBody, false)
	if err != nil {
		return resp, OutcomeFailedOver, verdict{cause: err, kind: restFailing}
	}
	data := answer.data
	if scrubbed, changed := e.scrub(data); changed {
		data = scrubbed
		resp.Body, resp.ContentLength = newBodyReader(data), int64(len(data))
	}
	v := classify(resp, data, time.Now())
	if v.final {
		return resp, OutcomeReturned, v
	}
	return resp, OutcomeFailedOver, v
}

// isEventStream reports whether resp is a stream of server-sent events, which is passed on as it arrives.
func isEventStream(resp *http.Response) bool {
	return strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
}

// attemptRequest is orig readdressed to u with b's credentials (auth, in b's auth header), under the attempt's
// context.
func attemptRequest(ctx context.Context, orig *http.Request, b *backend, u *url.URL, body requestBody, auth []string) (*http.Request, error) {
	out := orig.WithContext(ctx)
	out.URL, out.Host, out.RequestURI = u, "", ""
	h := orig.Header.Clone()
	if h == nil {
		h = make(http.Header, 1)
	}
	for k := range h {
		// The caller's credentials never travel, however their header is spelled.
		if strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "Api-Key") {
			delete(h, k)
		}
	}
	h[b.authHeader] = auth
	out.Header = h
	var err error
	if out.Body, err = body.get(); err != nil {
		return nil, fmt.Errorf("replaying request body: %w", err)
	}
	out.ContentLength = body.length
	// GetBody lets the transport resend the body on a fresh connection when a reused one turns out dead.
	out.GetBody = body.get
	return out, nil
}

// requestBody gives each attempt a fresh copy of the logical request's body.
type requestBody struct {
	get    func() (io.ReadCloser, error)
	length int64
	data   []byte // the bytes, when they are in memory; nil when only get has them
}

// replayable prepares req's body for replay and finds the model it names. A body that can already be replayed
// (go-openai's can: its GetBody reads the bytes it marshalled) is not copied: only its start is read, where
// go-openai writes the model.
func replayable(req *http.Request) (requestBody, string, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return requestBody{}, "", errors.New("failover: request has no body")
	}
	if req.GetBody != nil && req.ContentLength > 0 {
		req.Body.Close()
		if req.ContentLength > maxBody {
			return requestBody{}, "", fmt.Errorf("failover: request body: %w", errBodyTooLarge)
		}
		head, err := readBody(req.GetBody, min(req.ContentLength, 256))
		if err != nil {
			return requestBody{}, "", err
		}
		model, ok := leadingModel(head)
		if !ok {
			all, err := readBody(req.GetBody, req.ContentLength)
			if err != nil {
				return requestBody{}, "", err
			}
			model = modelOf(all)
		}
		return requestBody{get: req.GetBody, length: req.ContentLength}, model, nil
	}
	data, err := readAll(nil, req.Body, req.ContentLength, maxBody)
	req.Body.Close()
	if err != nil {
		return requestBody{}, "", fmt.Errorf("failover: reading request body: %w", err)
	}
	return bytesBody(data), modelOf(data), nil
}

// bytesBody replays data.
func bytesBody(data []byte) requestBody {
	get := func() (io.ReadCloser, error) {
		// A NopCloser around a *bytes.Reader is a body net/http knows will not block, so it sends headers and
		// body in one write instead of two (go-openai's bodies are the same).
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	return requestBody{get: get, length: int64(len(data)), data: data}
}

// readBody reads the first n bytes of a fresh copy of a body (all of it when n is its length).
func readBody(getBody func() (io.ReadCloser, error), n int64) ([]byte, error) {
	rc, err := getBody()
	if err != nil {
		return nil, fmt.Errorf("failover: reading request body: %w", err)
	}
	defer rc.Close()
	data := make([]byte, n) // n is at most maxBody: replayable checked ContentLength
	if _, err := io.ReadFull(rc, data); err != nil {
		return nil, fmt.Errorf("failover: reading request body: %w", err)
	}
	return data, nil
}

var errNoModelInRequest = errors.New("failover: request names no model: neither its JSON body nor an Azure path (/openai/deployments/{deployment}/…)")

// pathDeployment is the deployment of an Azure-shaped path, /…/openai/deployments/{deployment}{op}, or "". A
// request that names its model only there (an Azure client's) is routed by it.
func pathDeployment(path, op string) string {
	rest, ok := strings.CutSuffix(path, op)
	if !ok {
		return ""
	}
	i := strings.LastIndex(rest, "/openai/deployments/")
	if i < 0 {
		return ""
	}
	d := rest[i+len("/openai/deployments/"):]
	if strings.Contains(d, "/") {
		return ""
	}
	return d
}

// withModel is body with its "model" member set to model: replaced where the body has one (empty, null), else
// written in as its first member. body must be a JSON object.
func withModel(body requestBody, model string) (requestBody, error) {
	data, err := readBody(body.get, body.length)
	if err != nil {
		return requestBody{}, err
	}
	name, _ := json.Marshal(model) // a string always marshals
	start, end, found, err := modelMember(data)
	if err != nil {
		return requestBody{}, err
	}
	out := make([]byte, 0, len(data)+len(name)+11)
	if found {
		out = append(append(append(out, data[:start]...), name...), data[end:]...)
		return bytesBody(out), nil
	}
	rest := bytes.TrimLeft(data, " \t\r\n")[1:] // after '{': modelMember checked it is there
	out = append(out, `{"model":`...)
	out = append(out, name...)
	if trimmed := bytes.TrimLeft(rest, " \t\r\n"); len(trimmed) > 0 && trimmed[0] != '}' {
		out = append(out, ',')
	}
	return bytesBody(append(out, rest...)), nil
}

var errNotObject = errors.New("failover: request body is not a JSON object")

// modelMember finds the value of the top-level "model" member of the JSON object data: its byte offsets, and
// whether there is one.
func modelMember(data []byte) (start, end int, found bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, 0, false, errNotObject
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return 0, 0, false, errNotObject
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return 0, 0, false, errNotObject
		}
		if key == "model" {
			end := int(dec.InputOffset())
			return end - len(value), end, true, nil
		}
	}
	return 0, 0, false, nil
}

// report tells the trace, the attempt hook, the request's record and the logger about an attempt. The callbacks
// run outside any lock.
func (e *engine) report(ctx context.Context, trace *Trace, a Attempt) {
	if trace != nil && trace.AttemptDone != nil {
		trace.AttemptDone(a)
	}
	if e.onAttempt != nil {
		e.onAttempt(ctx, a)
	}
	if rec := recordOf(ctx); rec != nil {
		rec.attempts = append(rec.attempts, a)
	}
	if e.logger == nil {
		return
	}
	level := slog.LevelWarn // a backend failed
	switch a.Outcome {
	case OutcomeServed:
		level = slog.LevelDebug
	case OutcomeReturned, OutcomeCanceled, OutcomeLost:
		level = slog.LevelInfo // the request's, the caller's or hedging's doing, not a backend's
	}
	if !e.logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("region", a.Region),
		slog.String("deployment", a.Deployment),
		slog.Int("status", a.Status),
		slog.String("outcome", a.Outcome.String()),
		slog.Duration("duration", a.Duration),
	}
	if a.Rest > 0 {
		attrs = append(attrs, slog.Duration("rest", a.Rest))
	}
	if a.Err != nil {
		attrs = append(attrs, slog.String("error", a.Err.Error()))
	}
	e.logger.LogAttrs(ctx, level, "failover attempt", attrs...)
}

// modelOf finds the model a request body names.
func modelOf(body []byte) string {
	if model, ok := leadingModel(body); ok {
		return model
	}
	var m struct {
		Model string `json:"model"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	return m.Model
}

// leadingModel reads the model from a body that starts with it, as go-openai writes chat requests, without a
// JSON parse.
func leadingModel(body []byte) (string, bool) {
	const prefix = `{"model":"`
	if !bytes.HasPrefix(body, []byte(prefix)) {
		return "", false
	}
	rest := body[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", false
	}
	return string(rest[:end]), true
}

// looksLikeObject is a cheap check that data is one JSON object: it catches an empty answer, an HTML error page and
// most cut answers (a cut that the transport did not already report) without a second parse of every answer;
// json.Valid would cost some 3% of a whole call. What slips through fails in the caller's decoder.
func looksLikeObject(data []byte) bool {
	data = bytes.TrimSpace(data)
	return len(data) >= 2 && data[0] == '{' && data[len(data)-1] == '}'
}

// scrub removes every backend's secret from an upstream error body, in case a misbehaving server or proxy echoes
// a key or token back. It runs only on error answers, so its cost is off the hot path. A JSON body is also
// checked as it will be read: a secret spelt with escapes ("\u0062…") shows plainly once go-openai decodes the
// message, so such a body goes on re-encoded without the escapes, and without the secret.
func (e *engine) scrub(data []byte) (scrubbed []byte, changed bool) {
	data, changed = e.scrubBytes(data)
	if bytes.IndexByte(data, '\\') >= 0 {
		if plain, ok := withoutEscapes(data); ok {
			if clean, found := e.scrubBytes(plain); found {
				return clean, true
			}
		}
	}
	return data, changed
}

// scrubBytes removes every backend's secret from data as it is spelt there.
func (e *engine) scrubBytes(data []byte) (scrubbed []byte, changed bool) {
	e.eachSecret(func(secret string) {
		if bytes.Contains(data, []byte(secret)) {
			data, changed = bytes.ReplaceAll(data, []byte(secret), []byte(redacted)), true
		}
	})
	return data, changed
}

// withoutEscapes re-encodes a JSON value so that its strings hold their characters rather than escapes; false
// when data is not one JSON value.
func withoutEscapes(data []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return nil, false
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return nil, false
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), true
}

// scrubHeader redacts, in place, every backend's secret from the headers of an error answer: they end up in
// attempts and errors, which are printed.
func (e *engine) scrubHeader(h http.Header) {
	e.eachSecret(func(secret string) {
		for _, values := range h {
			for i, v := range values {
				if strings.Contains(v, secret) {
					values[i] = strings.ReplaceAll(v, secret, redacted)
				}
			}
		}
	})
}

// eachSecret calls f with every key, and the current and previous token of every credential.
func (e *engine) eachSecret(f func(secret string)) {
	for _, b := range e.backends {
		if b.secret != "" {
			f(b.secret)
		}
		if b.tokens != nil {
			for _, token := range b.tokens.secrets() {
				if token != "" {
					f(token)
				}
			}
		}
	}
}

// bodyReader is a response body over bytes already in memory. Read and Close may run concurrently, as on
// net/http's own bodies: a pooled buffer must go back to the pool once, and never while a Read copies from it.
type bodyReader struct {
	mu     sync.Mutex
	r      bytes.Reader
	data   []byte
	pooled *[]byte // where data goes back to answerBuffers on Close; nil when it does not
}

func newBodyReader(data []byte) *bodyReader {
	b := &bodyReader{data: data}
	b.r.Reset(data)
	return b
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Read(p)
}

// Close recycles a pooled buffer. Reads after Close see an empty body, never bytes of a later answer.
func (b *bodyReader) Close() error {
	b.mu.Lock()
	buf := b.pooled
	if buf != nil {
		b.r.Reset(nil)
		*buf, b.data, b.pooled = b.data[:0], nil, nil
	}
	b.mu.Unlock()
	if buf != nil {
		answerBuffers.Put(buf)
	}
	return nil
}

// answerBuffers recycles the buffers of successful non-streaming answers: go-openai decodes from a buffer of its
// own, so ours is free again once the body is closed, and a buffered answer then costs no more garbage than a
// direct call. Error answers are not pooled: their bytes live on in the errors made from them.
var answerBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledAnswer keeps rare large answers (embeddings batches) from pinning memory in the pool.
const maxPooledAnswer = 64 << 10

// bufferBody reads resp's body (at most limit bytes) into memory and replaces it with a bodyReader, on a pooled
// buffer if pooled is set.
func bufferBody(resp *http.Response, limit int64, pooled bool) (*bodyReader, error) {
	var buf *[]byte
	if pooled {
		buf = answerBuffers.Get().(*[]byte)
	} else {
		buf = new([]byte)
	}
	data, err := readAll(*buf, resp.Body, resp.ContentLength, limit)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading response body: %w", err)
	}
	body := newBodyReader(data)
	if pooled && cap(data) <= maxPooledAnswer {
		body.pooled = buf
	}
	resp.Body, resp.ContentLength = body, int64(len(data))
	return body, nil
}

// readAll reads r to its end into buf (grown as needed), sized by hint when the length is known, failing past
// limit bytes.
func readAll(buf []byte, r io.Reader, hint, limit int64) ([]byte, error) {
	if hint < 0 || hint > limit {
		hint = 512
	}
	data := buf[:0]
	if int64(cap(data)) < hint+1 { // +1: the read that sees EOF needs room
		data = make([]byte, 0, hint+1)
	}
	for {
		n, err := r.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if int64(len(data)) > limit {
			return nil, errBodyTooLarge
		}
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
