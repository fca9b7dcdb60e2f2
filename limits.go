package failover

// The limits one attempt runs under, each with one meaning (docs/configuration.md, "Limits"):
//   - silence before the region responds (WithHeaderTimeout): connecting and, for a stream, its headers once the
//     request is sent;
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
	silenceFor time.Duration
	stream     bool

	mu        sync.Mutex
	silence   *time.Timer // the silence limit; nil until first started
	running   bool        // the silence limit is counting
	silent    bool        // the silence limit passed
	connected bool        // the transport has the connection: no later dial is this attempt's
	heard     bool        // the region responded: the silence limit is over
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

// sending returns the context to send the attempt's request under, which times the region's silence as the
// transport reports it through net/http/httptrace: from the start of a dial (DNS or connect: not a wait for a
// connection of the transport's own pool) to the connection, and, for a stream, from the request's last byte to
// the response headers, which Azure sends as soon as it has the request, before the model has produced anything.
// A non-streaming call's headers come only with its finished answer, and an upload takes what it takes: neither
// is silence. A transport that reports nothing (a custom RoundTripper) is left to the attempt limit.
func (k *attemptClock) sending(ctx context.Context) context.Context {
	d := k.silenceFor
	if d <= 0 {
		return ctx
	}
	trace := &httptrace.ClientTrace{
		DNSStart:     func(httptrace.DNSStartInfo) { k.dialing(d) },
		ConnectStart: func(string, string) { k.dialing(d) },
		GotConn:      func(httptrace.GotConnInfo) { k.gotConn() },
	}
	if k.stream {
		trace.WroteRequest = func(httptrace.WroteRequestInfo) { k.arm(d, "no response headers") }
	}
	return httptrace.WithClientTrace(ctx, trace)
}

// dialing starts the silence limit for a dial, unless one is counting or the connection is already had (the
// transport may go on dialing for its pool after it gave the request another connection).
func (k *attemptClock) dialing(d time.Duration) {
	k.mu.Lock()
	connected, running := k.connected, k.running
	k.mu.Unlock()
	if !connected && !running {
		k.arm(d, "no connection")
	}
}

// gotConn ends the dial's silence limit.
func (k *attemptClock) gotConn() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.connected = true
	k.stopSilenceLocked()
}

// arm starts the silence limit, d from now, unless the region has responded.
func (k *attemptClock) arm(d time.Duration, what string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.heard {
		return
	}
	k.running = true
	if k.silence != nil {
		k.silence.Stop()
	}
	k.silence = time.AfterFunc(d, func() {
		k.mu.Lock()
		passed := k.running && !k.heard
		k.silent = k.silent || passed
		k.mu.Unlock()
		if passed {
			k.cancel(fmt.Errorf("%w: %s after %s", ErrAttemptTimeout, what, d))
		}
	})
}

func (k *attemptClock) stopSilenceLocked() {
	k.running = false
	if k.silence != nil {
		k.silence.Stop()
	}
}

// responded ends the silence limit: the region has answered (or the transport has given up).
func (k *attemptClock) responded() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.heard = true
	k.stopSilenceLocked()
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
