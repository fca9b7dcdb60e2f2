package failover

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// call is one request on its way through the backends: what it asks for, the order of the current pass, and
// what became of its attempts.
type call struct {
	e         *engine
	ctx       context.Context
	req       *http.Request
	op, model string
	body      requestBody
	pathModel bool // the model came from an Azure path: the OpenAI fallback gets it written into its body
	trace     *Trace
	cost      float64 // the request's estimated tokens, when steering (see estimateTokens)
	stream    bool    // the request asks for a stream, as far as its body says

	next       int       // the next backend of this pass's order to consider
	attempts   []Attempt // the attempts that failed over, in order
	passedOver []Skip    // the backends this pass did not try, and why, as they were then
	soonest    time.Time // when the first resting backend comes back; zero if none will
	hedges     int       // hedges sent
	made       int       // attempts reported
}

// report tells the trace, the hook and the logger about an attempt (see engine.report).
func (c *call) report(a Attempt) {
	c.made++
	c.e.report(c.ctx, c.trace, a)
}

// shape reads what steering and hedging need of the request's body: its estimated tokens, and whether it asks
// for a stream. A body that cannot be read is counted by its length; the attempts will fail on it anyway.
func shape(c *call) {
	if !readBodyBytes(c.body, func(data []byte) {
		c.cost = estimateOf(data, c.body.length)
		c.stream = c.e.hedger != nil && jsonTrue(data, `"stream"`) // only hedging keeps latencies apart by it
	}) {
		c.cost = float64(c.body.length+3) / 4
	}
}

// admitNext admits the next backend of the pass's order that serves the model and does not rest, recording why
// it passed over the others. The order is not kept in call, so that it can stay on Do's stack. A hedge goes only to
// a region with room: the OpenAI fallback is for when every region failed, and a hedge is not worth a 429.
func (c *call) admitNext(order []*backend, hedge bool) (*backend, ticket, bool, error) {
	for ; c.next < len(order); c.next++ {
		b := order[c.next]
		if c.ctx.Err() != nil {
			return nil, ticket{}, false, canceled(c.ctx, c.made)
		}
		if hedge && !b.azure {
			return nil, ticket{}, false, nil
		}
		if !b.serves(c.model) {
			continue
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
		if c.e.steering && b.azure {
			t.quota = b.health.charge(c.model, c.cost, now)
		}
		c.next++
		return b, t, true, nil
	}
	return nil, ticket{}, false, nil
}

// bodyFor is the body to send b: the request's, or for the OpenAI fallback of a request that named its model only
// in an Azure path, a copy with the model written in.
func (c *call) bodyFor(b *backend) (requestBody, error) {
	if !b.azure && c.pathModel {
		return withModel(c.body, c.model)
	}
	return c.body, nil
}

// one makes one attempt at b with ticket t and reports it. done is set when the request is over, with its
// answer or error.
func (c *call) one(b *backend, t ticket) (resp *http.Response, done bool, err error) {
	sent, err := c.bodyFor(b)
	if err != nil {
		c.e.release(c.ctx, b, c.model, t)
		b.health.uncount(c.model, t.quota)
		return nil, true, err
	}
	resp, a, until := c.e.attempt(c.ctx, c.req, b, c.op, c.model, sent, t)
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

// wait tells the trace, then waits d for a backend to come back or have room; the error is the context's, when
// it ends first.
func (c *call) wait(d time.Duration) error {
	if c.trace != nil && c.trace.Wait != nil {
		c.trace.Wait(d)
	}
	if !sleep(c.ctx, d) {
		return canceled(c.ctx, c.made)
	}
	return nil
}

// failed records an attempt that failed over: the backend is back at until (zero: not soon).
func (c *call) failed(a Attempt, until time.Time) {
	c.attempts = append(c.attempts, a)
	c.soonest = earliest(c.soonest, until)
}

// latencyKind is what the request's latencies are kept by.
func (c *call) latencyKind() latencyKind { return latencyKind{model: c.model, stream: c.stream} }
