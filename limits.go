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
	cancel     context.CancelCauseFunc
	limit      time.Duration
	timer      *time.Timer // the attempt limit
	mu         sync.Mutex
	silence    *time.Timer   // the silence limit; nil while not running
	silent     bool          // the silence limit passed
	heard      bool          // the region responded: the silence limit is over
	silenceFor time.Duration // 0: no silence limit
	stream     bool
}

// startClock starts timing an attempt at b and returns the attempt's context, which the first limit to pass ends.
func (c *request) startClock(ctx context.Context, b *backend) (context.Context, *attemptClock) {
	actx, cancel := context.WithCancelCause(ctx)
	k := &attemptClock{cancel: cancel, limit: c.attemptLimit(b), stream: c.stream}
	k.timer = time.AfterFunc(k.limit, func() { cancel(fmt.Errorf("%w after %s", ErrAttemptTimeout, k.limit)) })
	if silence := c.e.headerTimeout; silence < k.limit { // else the attempt limit covers it
		k.silenceFor = silence
	}
	return actx, k
}

// sending starts the silence limit as the request leaves (not before: fetching an Entra ID token is not the
// region's silence), and returns the context to send it under. A stream's headers come as soon as the region has
// taken the request, so silence until then is no model thinking: it is timed from now, whatever the transport. A
// non-streaming call's headers come only with its finished answer, so only its connection is timed, as the
// transport reports it through its trace; a transport that reports nothing is left to the attempt limit.
func (k *attemptClock) sending(ctx context.Context) context.Context {
	switch d := k.silenceFor; {
	case d <= 0:
		return ctx
	case k.stream:
		k.arm(d, "no response headers")
		return ctx
	default:
		return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GetConn: func(string) { k.arm(d, "no connection") },
			GotConn: func(httptrace.GotConnInfo) { k.responded() },
		})
	}
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
