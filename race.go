package failover

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// mayHedge reports whether an attempt at b could be hedged: hedging is on, the request has a hedge and the budget
// one left, b has a hedge delay, and a region follows b in the pass's order.
func (c *call) mayHedge(order []*backend, b *backend) bool {
	h := c.e.hedger
	if h == nil || b.fallback || c.pin != nil || c.seek || c.background || c.hedges >= h.maxHedges || !h.affordable() {
		return false
	}
	if _, ok := h.delayFor(b, c.latencyKind()); !ok {
		return false
	}
	return slices.ContainsFunc(order[c.next:], func(b *backend) bool { return !b.fallback && b.serves(c.model) })
}

// flight is one attempt of a race, in flight on a goroutine of its own.
type flight struct {
	b      *backend
	cancel context.CancelCauseFunc // ends the attempt's context, with the reason
}

// finished is what became of an attempt of a race.
type finished struct {
	f     *flight
	resp  *http.Response
	a     Attempt
	until time.Time
	panic any // what the attempt panicked with, if it did
}

// race makes an attempt at b with ticket t, and while it goes unanswered past its hedge delay, hedges it: the
// next region gets an attempt too, and so on up to the request's hedges. The first answer that settles the
// request wins; the other attempts are canceled (or their answers closed), waited for and reported first, so
// that the winner is the last attempt reported. Attempts that fail are reported as they fail; when all have
// failed, done is false and the pass goes on.
func (c *call) race(order []*backend, b *backend, t ticket) (resp *http.Response, done bool, err error) {
	// One attempt, and a hedge for each hedge left, each at a backend still to come in the order.
	results := make(chan finished, 1+min(c.e.hedger.maxHedges-c.hedges, len(order)-c.next))
	var inFlight []*flight
	launch := func(b *backend, t ticket, hedged bool) error {
		sent, err := c.bodyFor(b)
		if err != nil { // the body must name b's deployment, and it is not a JSON object: the request's fault
			c.release(c.ctx, b, t)
			b.health.uncount(c.model, t.quota)
			return err
		}
		ctx, cancel := context.WithCancelCause(c.ctx)
		f := &flight{b: b, cancel: cancel}
		inFlight = append(inFlight, f)
		rq := c.request // a copy: the call goes on while the attempt runs
		go func() {
			r := finished{f: f}
			defer func() {
				// A panic (in a caller's transport, say) goes on on the request's goroutine, where the caller
				// can recover it, as it would without hedging.
				if p := recover(); p != nil {
					r.panic = p
				}
				results <- r
			}()
			r.resp, r.a, r.until = rq.attempt(ctx, b, t, sent)
			r.a.Hedged = hedged
		}()
		return nil
	}
	if err := launch(b, t, false); err != nil {
		return nil, true, err
	}
	kind := c.latencyKind()
	delay, _ := c.e.hedger.delayFor(b, kind)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for len(inFlight) > 0 {
		select {
		case r := <-results:
			inFlight = slices.DeleteFunc(inFlight, func(f *flight) bool { return f == r.f })
			switch {
			case r.panic != nil:
				c.end(inFlight, results, errRacePanicked, r)
			case r.a.Outcome == OutcomeServed, r.a.Outcome == OutcomeReturned:
				return c.settled(r, c.end(inFlight, results, errRaceLost, r))
			case r.a.Outcome == OutcomeCanceled: // the request's context ended
				return c.settled(r, c.end(inFlight, results, context.Cause(c.ctx), r))
			}
			r.f.cancel(nil)
			c.report(r.a)
			c.failed(r.a, r.until)
		case <-timer.C:
			if c.hedges >= c.e.hedger.maxHedges || !c.e.hedger.affordable() {
				continue
			}
			next, nt, ok, err := c.admitNext(order, true)
			if err != nil || !ok {
				continue // the context's end is seen below; no region is free to hedge to
			}
			if !c.e.hedger.spend() { // another request took the last of the budget meanwhile
				c.release(c.ctx, next, nt)
				next.health.uncount(c.model, nt.quota)
				c.next-- // not tried: this request may still fail over to it
				c.sent--
				continue
			}
			if launch(next, nt, true) == nil {
				c.hedges++
				if d, ok := c.e.hedger.delayFor(next, kind); ok && c.hedges < c.e.hedger.maxHedges {
					timer.Reset(d)
				}
			}
		case <-c.ctx.Done():
			// An attempt may have been served in the same instant: as without hedging, its answer goes back.
			return c.settled(finished{}, c.end(inFlight, results, context.Cause(c.ctx), finished{}))
		}
	}
	return nil, false, nil
}

var (
	// errRaceLost is the cause of an attempt canceled because another attempt of the request answered first.
	errRaceLost = errors.New("another attempt of the request answered first")
	// errRacePanicked is the cause of an attempt canceled because another attempt of the request panicked.
	errRacePanicked = errors.New("another attempt of the request panicked")
)

// end cancels the attempts still in flight with cause, waits for each, and reports it: as lost when another
// attempt won (first) and this one was canceled or answered too late; as it ended otherwise. An answer that came
// in the same instant as the end of the request's context is kept and returned instead of reported, since
// without hedging it would have been returned. A panic, first's or any attempt's, goes on once all have ended.
func (c *call) end(inFlight []*flight, results <-chan finished, cause error, first finished) (kept finished) {
	for _, f := range inFlight {
		f.cancel(cause)
	}
	panicked := first.panic
	for range inFlight {
		r := <-results
		switch {
		case r.panic != nil:
			if panicked == nil {
				panicked = r.panic
			}
			continue
		case cause != errRaceLost && kept.resp == nil && r.resp != nil &&
			(r.a.Outcome == OutcomeServed || r.a.Outcome == OutcomeReturned):
			kept = r
			continue
		case cause == errRaceLost && r.a.Outcome == OutcomeCanceled:
			// Unanswered when canceled: the region's latency is at least what it had taken.
			r.f.b.health.sampleLatency(c.latencyKind(), r.a.Duration)
			r.f.b.health.measure(r.a.Duration, time.Now())
			r.a.Outcome, r.a.Err = OutcomeLost, errRaceLost
		case cause == errRacePanicked && r.a.Outcome == OutcomeCanceled:
			r.a.Err = errRacePanicked
		case r.a.Outcome == OutcomeServed, r.a.Outcome == OutcomeReturned:
			if r.resp != nil {
				r.resp.Body.Close()
			}
			r.a.Outcome, r.a.Err = OutcomeLost, errRaceLost
		}
		c.report(r.a)
		if r.a.Outcome == OutcomeFailedOver {
			c.attempts = append(c.attempts, r.a)
		}
	}
	if panicked != nil {
		for _, r := range [...]finished{kept, first} {
			if r.resp != nil {
				r.resp.Body.Close()
			}
			if r.f != nil {
				r.f.cancel(nil)
			}
		}
		panic(panicked)
	}
	return kept
}

// settled ends the request with the attempt that settled it: won, or, when the request's context ended first
// (won is then canceled or empty), with an answer kept from the same instant, or else the context's error.
func (c *call) settled(won, kept finished) (*http.Response, bool, error) {
	if won.a.Outcome != OutcomeServed && won.a.Outcome != OutcomeReturned {
		if won.f != nil {
			won.f.cancel(nil)
			c.report(won.a)
		}
		if kept.resp == nil {
			return nil, true, canceled(c.ctx, c.made)
		}
		won = kept // end keeps an answer only when the request's context ended, never beside a winner
	}
	if won.resp == nil { // the request could not be sent: the caller's own failure, not a backend's
		won.f.cancel(nil)
		c.report(won.a)
		return nil, true, fmt.Errorf("failover: %w", won.a.Err)
	}
	c.won(won)
	c.report(won.a)
	return won.resp, true, nil
}

// won hands the winner's answer over: its attempt's context ends when a stream's body is closed, or at once
// for an answer already read into memory.
func (c *call) won(r finished) {
	if s, ok := r.resp.Body.(*streamBody); ok {
		end := s.cancel
		s.cancel = func() {
			end()
			r.f.cancel(nil)
		}
		return
	}
	r.f.cancel(nil)
}
