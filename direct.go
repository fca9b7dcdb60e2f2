package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The operations that do not fail over (see operations.go): requests about a stored response, which go where it
// was made; files and batches, which go to one region; and the model list, which the Client answers itself. Each
// is sent once to its backend and its answer comes back as it came: a region whose state is elsewhere cannot
// stand in for another.

// HeaderPinRegion is the request header that names the region (its Region.Name) a file or batch request goes to.
// Without it, a request about a file or batch goes to the region that made it, as far as the Client knows, and
// one that makes a new file or batch (or lists them) to the first region. Such requests are never failed over: a
// file uploaded to one region is not in another, and a batch runs where its input file is.
const HeaderPinRegion = "X-Failover-Pin-Region"

// ErrStoredStateUnavailable is matched by the error of a request about stored state (a stored response, one of
// its items, a file or a batch) whose region cannot take it now: it rests, or cannot be reached. Its error is an
// *ExhaustedError whose HeldBy names the region; a retry after its RetryAt can succeed. Over HTTP it is a 503.
var ErrStoredStateUnavailable = errors.New("failover: the region that holds the state this request names is unavailable")

// direct sends a request that does not fail over (see route) to its backend, or, for an id no one knows, to
// the regions in order until one has it. A region that holds the state and cannot answer now is the typed error
// (ErrStoredStateUnavailable); while seeking, a region that cannot answer now (resting, refusing the Client's
// credentials, 429, 5xx, no answer) leaves the search open: the caller hears "not found" only when every region
// said so.
func (e *engine) direct(req *http.Request, r route) (*http.Response, error) {
	ctx := req.Context()
	if r.kind == opLocal {
		closeBody(req)
		return e.models(req), nil
	}
	body, unsent, err := directBody(req)
	if err != nil {
		return nil, err
	}
	defer unsent() // a one-shot body no region took is closed, as a RoundTripper must
	targets, held, err := e.targets(ctx, req, r, body)
	if err != nil {
		return nil, err
	}
	d := directCall{e: e, ctx: ctx, trace: ContextTrace(ctx)}
	defer d.flush(OutcomeNotHere)
	for _, b := range targets {
		now := time.Now()
		if skip, resting := b.health.skipped("", now); resting {
			skip.Region, d.open = b.name, true
			d.skipped, d.soonest = append(d.skipped, skip), earliest(d.soonest, skip.Until)
			if held {
				break
			}
			continue
		}
		if d.sent >= e.budget { // a search over many regions is bounded as a failover is
			d.open, d.overBudget = true, true
			break
		}
		d.sent++
		resp, data, a := e.sendOnce(ctx, req, b, r, body)
		if errors.Is(a.Err, ErrAnswerBudget) { // the caller's limit, not the region's failure
			a.Outcome = OutcomeReturned
			d.report(a)
			return nil, fmt.Errorf("failover: %w", a.Err)
		}
		if a.Outcome = directOutcome(ctx, resp, held); a.Outcome == OutcomeFailedOver {
			d.failed(b, resp, data, &a, now)
		}
		switch a.Outcome {
		case OutcomeCanceled:
			d.report(a)
			closeResponse(resp)
			return nil, canceled(ctx, d.made)
		case OutcomeServed, OutcomeReturned:
			d.report(a)
			b.health.succeeded("", ticket{}, a.Outcome == OutcomeServed, a.Duration, time.Now())
			if !held && r.id != "" {
				e.owners.learn(ctx, b, r.id) // found: next time it is asked for where it is
			}
			return e.settleDirect(ctx, resp, b, r, req.Method)
		case OutcomeNotHere:
			d.notHere(resp, a)
			continue
		}
		d.report(a)
		d.attempts = append(d.attempts, a)
		closeResponse(resp)
		if held {
			break
		}
	}
	if d.notFound != nil && !d.open {
		d.flush(OutcomeReturned) // every region that could have it said it has not: the last one's word for it
		resp := d.notFound
		d.notFound = nil
		return resp, nil
	}
	err = &ExhaustedError{Attempts: d.attempts, Skipped: d.skipped, RetryAt: d.soonest}
	if d.overBudget {
		err.(*ExhaustedError).Budget = e.budget
		if d.soonest.IsZero() {
			err.(*ExhaustedError).RetryAt = time.Now().Add(time.Second)
		}
	}
	if held {
		err.(*ExhaustedError).HeldBy = targets[0].name
	}
	return nil, err
}

// directOutcome is what an answer to a direct request (nil: none came) makes of its attempt.
func directOutcome(ctx context.Context, resp *http.Response, held bool) Outcome {
	switch {
	case ctx.Err() != nil:
		return OutcomeCanceled
	case resp != nil && resp.StatusCode < 400:
		return OutcomeServed
	case resp != nil && resp.StatusCode == http.StatusNotFound && !held:
		return OutcomeNotHere // perhaps in the next region
	case resp == nil || failedDirect(resp.StatusCode):
		return OutcomeFailedOver
	}
	return OutcomeReturned // the request's own fault: every region would say the same
}

// failedDirect reports whether a direct request's answer says the region cannot answer now, rather than that the
// request is at fault: another region, or this one later, may.
func failedDirect(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500 || status == http.StatusUnauthorized ||
		status == http.StatusForbidden || status == http.StatusRequestTimeout
}

// directCall is what one direct request has seen so far.
type directCall struct {
	e          *engine
	ctx        context.Context
	trace      *Trace
	attempts   []Attempt // the failed ones, for the error
	skipped    []Skip
	soonest    time.Time
	open       bool           // a region that may have the id did not answer
	notFound   *http.Response // the last "not found" of a search
	pending    *Attempt       // its attempt, reported once it is known whether it is the answer
	made       int
	sent       int  // requests sent, against the budget
	overBudget bool // regions were left unasked for want of budget
}

func (d *directCall) report(a Attempt) {
	d.flush(OutcomeNotHere)
	d.made++
	d.e.reportAttempt(d.ctx, d.trace, a)
}

// flush reports the pending "not found" with outcome o.
func (d *directCall) flush(o Outcome) {
	if p := d.pending; p != nil {
		d.pending = nil
		p.Outcome = o
		d.made++
		d.e.reportAttempt(d.ctx, d.trace, *p)
	}
	if o == OutcomeNotHere {
		closeResponse(d.notFound)
		d.notFound = nil
	}
}

// notHere holds a region's "not found" back: the answer, if no region has the id.
func (d *directCall) notHere(resp *http.Response, a Attempt) {
	d.flush(OutcomeNotHere)
	d.notFound, d.pending = resp, &a
}

// failed records that b could not answer at now: the attempt's cause, when to come back (its Retry-After, else a
// second), and a rest of the region when it did not answer at all or in time (the whole region: it is not the
// operation that hangs), or of its direct operations after a 5xx, so that the next request does not wait for it
// again.
func (d *directCall) failed(b *backend, resp *http.Response, data []byte, a *Attempt, now time.Time) {
	wait, v := time.Second, verdict{kind: restUnreachable}
	if resp != nil {
		v = classify(resp, data, time.Now())
		a.Err = v.cause
		if v.wait > 0 {
			wait = v.wait
		}
	}
	if resp == nil || resp.StatusCode >= 500 { // no answer, or none in time, rests the whole region
		r, _ := b.health.failed("", ticket{start: now}, a.Status, v, &d.e.rests, time.Now())
		a.Rest = max(time.Until(r.until), 0)
	}
	d.soonest, d.open = earliest(d.soonest, time.Now().Add(wait)), true
}

// targets are the backends a direct request goes to, in order; held reports that the request names state that
// only the one backend holds.
func (e *engine) targets(ctx context.Context, req *http.Request, r route, body requestBody) (_ []*backend, held bool, _ error) {
	// The OpenAI fallback holds what was made there like any region, and is asked about an id it is known to
	// hold; but it is not asked about ids no one knows: an Azure region's ids are not a third party's business.
	regions := slices.DeleteFunc(slices.Clone(e.backends), func(b *backend) bool { return b.fallback })
	if name := req.Header.Get(HeaderPinRegion); name != "" && r.kind == opPinned {
		i := slices.IndexFunc(regions, func(b *backend) bool { return b.name == name })
		if i < 0 {
			return nil, false, fmt.Errorf("failover: %s names no region of this client: %q", HeaderPinRegion, name)
		}
		return regions[i : i+1], true, nil
	}
	id := r.id
	if id == "" && r.op == "/batches" && body.data != nil {
		var batch struct {
			InputFileID string `json:"input_file_id"`
		}
		_ = json.Unmarshal(body.data, &batch)
		id = batch.InputFileID
	}
	if id != "" {
		if b := e.owners.find(ctx, id, true); b != nil {
			return []*backend{b}, true, nil
		}
	}
	if r.id == "" {
		return regions[:1], true, nil // a new file or batch, or a list: the first region's
	}
	return regions, false, nil
}

// settleDirect hands a direct answer over: a stored response's event stream read as a typed stream (so that a
// cut is never a clean end, and an error event is scrubbed), and what the answer says of where objects are
// remembered: a deleted one forgotten, a new file's or batch's id learned.
func (e *engine) settleDirect(ctx context.Context, resp *http.Response, b *backend, r route, method string) (*http.Response, error) {
	if resp.StatusCode >= 300 {
		return resp, nil
	}
	if r.kind == opStored && isEventStream(resp) {
		resp.Body = &streamBody{events: NewEventReader(resp.Body), body: resp.Body, scrub: e.scrub, typed: true}
	}
	switch {
	case r.id != "" && method == http.MethodDelete && strings.Count(r.op, "/") == 2: // DELETE /responses/{id}, /files/{id}
		e.owners.forget(ctx, r.id)
	case r.id == "" && method == http.MethodPost && r.kind == opPinned:
		if answer, ok := bodyOf(resp).(*bodyReader); ok { // read in sendOnce
			e.owners.learn(ctx, b, storedIDs(answer.data)...)
		}
	}
	return resp, nil
}

func closeResponse(resp *http.Response) {
	if resp != nil {
		resp.Body.Close()
	}
}
