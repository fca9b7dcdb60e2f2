package failover

// The limits one attempt runs under, each with one meaning (docs/configuration.md, "Limits"):
//   - silence before the region responds (WithHeaderTimeout): connecting and, for a stream, its headers;
//   - the attempt limit (WithAttemptTimeout, learned per region, model and kind of call): a non-streaming call's
//     whole answer, a stream's first content;
//   - the idle gap between a stream's events once content flows (WithStreamIdleTimeout, in stream.go).
// Each one that passes ends the attempt's context with a cause matching ErrAttemptTimeout (or ErrStreamStalled)
// that says which limit it was.

import (
	"context"
	"fmt"
	"net/http/httptrace"
	"sync"
	"time"
)

// attemptClock times one attempt against the silence limit and the attempt limit. Timers rather than a context
// deadline, so that they can be stopped: the silence limit once the region has responded, the attempt limit once
// a stream has begun.
type attemptClock struct {
	cancel  context.CancelCauseFunc
	limit   time.Duration
	timer   *time.Timer // the attempt limit
	mu      sync.Mutex
	silence *time.Timer // the silence limit; nil while not running
	silent  bool        // the silence limit passed
	heard   bool        // the region responded: the silence limit is over
}

// startClock starts timing an attempt at b and returns the attempt's context, which the first limit to pass ends.
func (c *request) startClock(ctx context.Context, b *backend) (context.Context, *attemptClock) {
	actx, cancel := context.WithCancelCause(ctx)
	k := &attemptClock{cancel: cancel, limit: c.attemptLimit(b)}
	k.timer = time.AfterFunc(k.limit, func() { cancel(fmt.Errorf("%w after %s", ErrAttemptTimeout, k.limit)) })
	silence := c.e.headerTimeout
	switch {
	case silence <= 0 || silence >= k.limit:
		// No silence limit, or one the attempt limit already covers.
	case c.stream:
		// A stream's headers come as soon as the region has taken the request: silence until then is no model
		// thinking, and it is timed from the start, whatever the transport.
		k.arm(silence, "no response headers")
	default:
		// A non-streaming call's headers come only with its finished answer: only the connection is timed, as
		// the transport reports it (a transport that reports nothing is left to the attempt limit).
		actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
			GetConn: func(string) { k.arm(silence, "no connection") },
			GotConn: func(httptrace.GotConnInfo) { k.responded() },
		})
	}
	return actx, k
}

// arm starts (or restarts, for a transport that tries a second connection) the silence limit.
func (k *attemptClock) arm(d time.Duration, what string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.heard {
		return
	}
	if k.silence != nil {
		k.silence.Reset(d)
		return
	}
	k.silence = time.AfterFunc(d, func() {
		k.mu.Lock()
		passed := !k.heard
		k.silent = k.silent || passed
		k.mu.Unlock()
		if passed {
			k.cancel(fmt.Errorf("%w: %s after %s", ErrAttemptTimeout, what, d))
		}
	})
}

// responded ends the silence limit: the region has connected or, for a stream, sent its headers.
func (k *attemptClock) responded() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.heard = true
	if k.silence != nil {
		k.silence.Stop()
	}
}

// stop stops both limits and reports whether neither had passed.
func (k *attemptClock) stop() bool {
	k.responded()
	stopped := k.timer.Stop()
	k.mu.Lock()
	defer k.mu.Unlock()
	return stopped && !k.silent
}

// attemptLimit is how long an attempt at b may go without its answer (a stream: its first content): the attempt
// timeout while b has too little recent history of the model and kind of call (see learnedHistory), else learnedLimitFactor times its recent
// p99 for them, between the floor and the attempt timeout. A region silent far longer than it has ever been slow
// is left in seconds, while a slow model's region keeps the time it needs.
func (c *request) attemptLimit(b *backend) time.Duration {
	e := c.e
	if e.attemptFloor >= e.attemptTimeout {
		return e.attemptTimeout
	}
	p, ok := b.health.learnedLatency(c.latencyKind(), learnedLimitPercentile, time.Now())
	if !ok {
		return e.attemptTimeout // the cold start: no recent history of the model here
	}
	return min(max(learnedLimitFactor*p, e.attemptFloor), e.attemptTimeout)
}
