package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"
)

// engine sends one logical OpenAI request to one backend after another. It is an HTTP doer: go-openai's client
// builds the logical request (any base URL, the operation at the end of its path, the model in its body) and the
// engine rewrites address, deployment, api-version and credentials for each backend it tries. It remembers what
// each backend's answers said (see health, in state.go) and passes over the backends that rest.
type engine struct {
	backends       []*backend // sorted by priority, the fallback last
	tiers          []*tier    // the regions by priority, for strategies other than StrategyOrdered
	fallback       *backend
	strategy       Strategy
	client         *http.Client // what sends attempts: the default transport's, or the caller's (WithHTTPClient)
	send           func(*http.Request) (*http.Response, error)
	attemptTimeout time.Duration
	maxWait        time.Duration
	rests          restPolicy
	logger         *slog.Logger
	onAttempt      func(context.Context, Attempt)
	share          *sharing // nil without a Store
	steering       bool     // WithQuotaSteering, with two regions or more to steer between
	hedger         *hedger  // nil without WithHedging
	owners         *owners  // which backend holds each stored object (affinity.go)
	budget         int      // the most upstream calls of one request (WithAttemptBudget)
	streamIdle     time.Duration
	attemptFloor   time.Duration
	headerTimeout  time.Duration
	scrubs         scrubCache // the spellings of the secrets that are scrubbed (scrub.go)
}

// maxPasses bounds the passes over the backends that one request makes, waiting for rests (or for probes, in
// steps of probePoll) between them.
const maxPasses = 40

// Do sends req to the backends in order, passing over those that rest or lack the model, and returns the first
// answer that settles it: a success, or a refusal of the request itself (such as 400), which goes back as it
// came. When every backend failed or rests, and the soonest rest ends before the request's deadline and within
// WithMaxWait of the request's start, it waits for it and goes round again. Otherwise it returns an
// *ExhaustedError, or the context's error, wrapped, when the context ends first.
func (e *engine) Do(req *http.Request) (*http.Response, error) {
	r, ok := routeOf(req.URL.EscapedPath())
	if !ok {
		closeBody(req)
		return nil, fmt.Errorf("failover: cannot route %s %s: %w", req.Method, req.URL.Path, errUnsupportedOperation)
	}
	if r.kind != opFailover {
		return e.direct(req, r)
	}
	c, err := e.newCall(req, r.op)
	if err != nil {
		return nil, err
	}
	return c.run()
}

var errUnsupportedOperation = errors.New("not an operation of the OpenAI API that the client routes")

// call is one request on its way through the backends: what it asks for, the order of the current pass, and
// what became of its attempts. Its methods are the request's pipeline, in the order a request meets them:
// run (the passes), pass (one pass over the order), admitNext (admission), one or race (hedging's one plug),
// attempt (send, then settle), settle (the region's state), report (trace, hook, log).
type call struct {
	request
	ctx       context.Context
	trace     *Trace
	cost      float64   // the request's estimated tokens, when steering (see estimateTokens)
	waitLimit time.Time // no wait may end later: the request has waited enough by then

	next       int       // the next backend of this pass's order to consider
	attempts   []Attempt // the attempts that failed over, in order
	passedOver []Skip    // the backends this pass did not try, and why, as they were then
	soonest    time.Time // when the first resting backend comes back; zero if none will
	hedges     int       // hedges sent
	made       int       // attempts reported
	sent       int       // attempts admitted, against the budget
	overBudget bool      // a backend was not tried for want of budget

	pin      *backend       // the one backend a Responses create naming its stored state may go to (responses.go)
	notFound *http.Response // the last "not here" answer of a seek, returned if every backend says so
	notHere  []*backend     // the backends a seek found the state is not in
	pending  *Attempt       // notFound's attempt, reported once it is known whether it is the answer
}

// request is what every attempt of a call reads and none changes. Attempts are its methods (attempt, then
// try and exchange in exchange.go, then settle), so that a race (race.go) can run them on goroutines of their
// own with a copy of it while the call goes on, and the call itself stays on the stack.
type request struct {
	e          *engine
	req        *http.Request
	op, model  string
	body       requestBody
	pathModel  bool     // the model came from an Azure path: a backend that reads it from the body gets it written in
	version    string   // the api-version the request asked for, if any (see backend.url)
	stream     bool     // the request asks for a stream, as far as its body says
	seek       bool     // a Responses create that names state no one knows the place of (responses.go)
	refs       []string // the stored objects a Responses create names
	background bool     // a Responses create that runs in the background: never hedged
}

// newCall reads what req asks for: its operation, its model (from the body, else from an Azure path) and, for
// steering and hedging, its shape.
func (e *engine) newCall(req *http.Request, op string) (call, error) {
	ctx := req.Context()
	body, model, err := replayable(req)
	if err != nil {
		return call{}, err
	}
	if isAudioUpload(op) {
		if body, model, err = formModel(req, body); err != nil {
			return call{}, err
		}
	}
	// When the model came from an Azure path rather than the body, the OpenAI fallback gets the body with the
	// model written in, since the public API reads it from there; made when the fallback is tried.
	pathModel := model == ""
	if pathModel {
		if model = pathDeployment(req.URL.Path, op); model == "" {
			return call{}, errNoModelInRequest
		}
	}
	if err := checkModelName(model); err != nil { // before any state, log line or region holds it
		return call{}, err
	}
	if model == "." || model == ".." {
		// It becomes a path segment of an Azure URL, where it would climb out of /openai/deployments/.
		return call{}, fmt.Errorf("failover: model %q is not a deployment name", model)
	}
	c := call{request: request{e: e, req: req, op: op, model: model, body: body, pathModel: pathModel,
		version: queryValue(req.URL.RawQuery, "api-version")}, ctx: ctx, trace: ContextTrace(ctx), waitLimit: time.Now().Add(e.maxWait)}
	if deadline, ok := ctx.Deadline(); ok && deadline.Before(c.waitLimit) {
		c.waitLimit = deadline
	}
	if op == "/responses" {
		if err := c.placeStored(); err != nil {
			return call{}, err
		}
	}
	shape(&c, e.steering || e.hedger != nil)
	if e.hedger != nil {
		e.hedger.fund()
	}
	return c, nil
}

// run makes passes over the backends until an attempt settles the request, waiting between passes for the
// soonest rest to end (or, when steering and no region has room, for room) while the wait limit allows.
func (c *call) run() (resp *http.Response, err error) {
	defer func() { // a seek that ended otherwise
		closeResponse(c.notFound)
		c.flushPending()
	}()
	var buf [8]*backend
	for pass := 1; ; pass++ {
		if c.e.share != nil {
			c.e.share.sync(c.ctx) // what other replicas learned, also while this request waited
		}
		c.passedOver, c.soonest, c.next = c.passedOver[:0], time.Time{}, 0
		order, roomIn := c.e.order(buf[:0], c.model, c.cost)
		if c.pin != nil {
			order, roomIn = append(buf[:0], c.pin), 0
		}
		if roomIn > 0 && pass < maxPasses && !c.e.fallbackServes(c.model) && !time.Now().Add(roomIn).After(c.waitLimit) {
			// No region has room: a request sent now would pay for a 429. Wait for the first to have it, as for
			// a rest; with an OpenAI fallback, the regions are tried as they are, and the fallback after them.
			if err := c.wait(roomIn); err != nil {
				return nil, err
			}
			continue
		}
		if resp, done, err := c.pass(order); done {
			return resp, err
		}
		if c.notFound != nil && c.noneHas(order) { // the last one's word for it
			c.pending.Outcome = OutcomeReturned
			resp, c.notFound = c.notFound, nil
			c.report(Attempt{})
			return resp, nil
		}
		soonest := c.soonest
		over := soonest.IsZero() || soonest.After(c.waitLimit) || !time.Now().Before(c.waitLimit) || pass == maxPasses
		if c.overBudget || !over && c.sent >= c.e.budget { // no waiting for a pass that could send nothing
			err := c.exhausted(soonest)
			err.(*ExhaustedError).Budget = c.e.budget
			return nil, err
		}
		if over {
			return nil, c.exhausted(soonest)
		}
		if err := c.wait(time.Until(soonest)); err != nil {
			return nil, err
		}
	}
}

// pass tries the backends of one pass's order, each admitted in turn, until one settles the request. It is where
// hedging plugs in: an attempt that may be hedged runs in a race (race.go) instead of alone.
func (c *call) pass(order []*backend) (resp *http.Response, done bool, err error) {
	for {
		b, t, ok, err := c.admitNext(order, false)
		if err != nil {
			return nil, true, err
		}
		if !ok {
			return nil, false, nil
		}
		if c.mayHedge(order, b) {
			resp, done, err = c.race(order, b, t)
		} else {
			resp, done, err = c.one(b, t)
		}
		if done {
			return resp, true, err
		}
	}
}

// admitNext admits the next backend of the pass's order that serves the model and does not rest, recording why
// it passed over the others. The order is not kept in call, so that it can stay on run's stack. A hedge goes only
// to a region with room: the OpenAI fallback is for when every region failed, and a hedge is not worth a 429.
func (c *call) admitNext(order []*backend, hedge bool) (*backend, ticket, bool, error) {
	for ; c.next < len(order); c.next++ {
		b := order[c.next]
		if c.ctx.Err() != nil {
			return nil, ticket{}, false, canceled(c.ctx, c.made)
		}
		if hedge && b.fallback {
			return nil, ticket{}, false, nil
		}
		if !b.serves(c.model) || c.seek && (b.fallback || slices.Contains(c.notHere, b)) {
			continue // a seek does not ask the OpenAI fallback about an Azure region's ids, nor a region twice
		}
		if c.sent >= c.e.budget {
			c.overBudget = true
			return nil, ticket{}, false, nil // run ends the request
		}
		now := time.Now()
		if hedge && c.e.steering && b.health.roomFor(c.model, c.cost, now) > 0 {
			// A hedge is optional: it is not worth a 429. The regions after this one have no room either.
			return nil, ticket{}, false, nil
		}
		t, back, ok := b.health.admit(c.model, now)
		if ok && c.e.share != nil && len(t.scopes(c.model)) > 0 {
			t, back, ok = c.e.share.claim(c.ctx, b, c.model, t)
		}
		if !ok {
			c.soonest = earliest(c.soonest, back)
			c.passedOver = append(c.passedOver, b.passedOver(c.model, now))
			continue
		}
		if c.e.steering && !b.fallback {
			t.quota = b.health.charge(c.model, c.cost, now)
		}
		c.next++
		c.sent++
		return b, t, true, nil
	}
	return nil, ticket{}, false, nil
}

// one makes one attempt at b with ticket t and reports it. done is set when the request is over, with its
// answer or error.
func (c *call) one(b *backend, t ticket) (resp *http.Response, done bool, err error) {
	sent, err := c.bodyFor(b)
	if err != nil { // the body must name b's deployment, and it is not a JSON object: the request's fault
		c.release(c.ctx, b, t)
		b.health.uncount(c.model, t.quota)
		return nil, true, err
	}
	resp, a, until := c.attempt(c.ctx, b, t, sent)
	if c.seek && a.Outcome == OutcomeReturned && resp != nil && notHere(a) {
		c.flushPending()
		closeResponse(c.notFound)
		a.Outcome = OutcomeNotHere // unless it is the answer: see run
		c.notFound, c.notHere, c.pending = resp, append(c.notHere, b), &a
		return nil, false, nil
	}
	c.report(a)
	switch a.Outcome {
	case OutcomeServed, OutcomeReturned:
		if resp == nil { // the request could not be sent: the caller's own failure, not a backend's
			return nil, true, fmt.Errorf("failover: %w", a.Err)
		}
		return resp, true, nil
	case OutcomeCanceled:
		return nil, true, canceled(c.ctx, c.made)
	}
	c.failed(a, until)
	return nil, false, nil
}

// attempt sends body to b under ctx with ticket t (see exchange.go) and settles the attempt in b's state. The
// ticket is released even if the attempt panics (in a caller's transport or GetBody), so that no backend is left
// probing forever.
func (c *request) attempt(ctx context.Context, b *backend, t ticket, body requestBody) (*http.Response, Attempt, time.Time) {
	settled := false
	defer func() {
		if !settled {
			c.release(ctx, b, t)
		}
	}()
	resp, a, v := c.try(ctx, b, body)
	until := c.settle(ctx, b, t, &a, v)
	settled = true
	if a.Outcome == OutcomeServed && c.op == "/responses" {
		c.learnResponse(ctx, b, resp) // also of a race's loser: the response is stored there all the same
	}
	s, stream := bodyOf(resp).(*streamBody)
	if stream {
		e, model := c.e, c.model // not c: the closure outlives the call
		s.onCut = func() { e.streamCut(ctx, b, model) }
		if !s.typed {
			s.expects = c.streamExpects
		}
	}
	// Latencies are kept whatever the options, for hedging and for any policy that learns from them.
	switch {
	case a.Outcome == OutcomeServed:
		b.health.sampleLatency(latencyKind{model: c.model, stream: stream}, a.Duration)
	case a.Outcome == OutcomeFailedOver && errors.Is(a.Err, ErrAttemptTimeout) && !errors.Is(a.Err, ErrCredential):
		// Counted, not sampled: a limit learned from the cuts of a region that never answers would grow with each
		// one (each cut is the last limit, and the next limit four times that) to the ceiling.
		b.health.cutAttempt(latencyKind{model: c.model, stream: c.stream})
	}
	return resp, a, until
}

// settle records an attempt's verdict in the backend's state, sets the rest it caused on a, logs a fault, and
// returns when the rest ends (zero when the backend does not rest).
func (c *request) settle(ctx context.Context, b *backend, t ticket, a *Attempt, v verdict) time.Time {
	if t.quota.cost > 0 && a.Header != nil {
		b.health.heard(c.model, a.Status, a.Header, t.quota, v.wait, time.Now())
	}
	switch {
	case a.Outcome == OutcomeCanceled, a.Outcome == OutcomeReturned && a.Status == 0:
		c.release(ctx, b, t) // no verdict on the backend
		return time.Time{}
	case a.Outcome == OutcomeServed, a.Outcome == OutcomeReturned:
		b.health.succeeded(c.model, t, a.Outcome == OutcomeServed, a.Duration, time.Now())
		if c.e.share != nil {
			c.e.share.recovered(ctx, b, c.model, t)
		}
		return time.Time{}
	}
	now := time.Now()
	r, logFault := b.health.failed(c.model, t, a.Status, v, &c.e.rests, now)
	var d time.Duration
	if !r.until.IsZero() {
		d = max(r.until.Sub(now), 0)
	}
	if c.e.share != nil {
		if r.until.IsZero() {
			c.e.share.release(ctx, b, c.model, t)
		} else {
			c.e.share.save(ctx, b, c.model, r, t)
		}
	}
	a.Rest = d
	if logFault && c.e.logger != nil {
		// Loud, and once per episode: a key or role that fails in one region is a configuration fault, and the
		// region stays out of service until it is fixed.
		msg := "failover: region refused its credentials or account; resting it"
		if a.Status == 0 {
			msg = "failover: region's Entra ID credential cannot give a token here; resting it"
		}
		c.e.logger.LogAttrs(ctx, slog.LevelError, msg, slog.String("region", a.Region), slog.Int("status", a.Status),
			slog.Duration("rest", d), slog.String("error", describeCause(a.Err)))
	}
	if v.kind == restMissing {
		return time.Time{} // not coming back soon enough to wait for
	}
	return now.Add(d)
}

// release ends t's probes without a verdict on the backend.
func (c *request) release(ctx context.Context, b *backend, t ticket) {
	b.health.release(t)
	if c.e.share != nil {
		c.e.share.release(ctx, b, c.model, t)
	}
}

// failed records an attempt that failed over: the backend is back at until (zero: not soon).
func (c *call) failed(a Attempt, until time.Time) {
	c.attempts = append(c.attempts, a)
	c.soonest = earliest(c.soonest, until)
}
