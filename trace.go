package failover

import (
	"context"
	"time"
)

// Trace holds callbacks for the attempts of one request. Like net/http/httptrace's ClientTrace it travels in the
// request's context: attach it with WithTrace.
type Trace struct {
	// AttemptDone is called after every attempt, on the goroutine that made the request. It must not block for
	// long. Without hedging, attempts are reported in order, each before the next starts. With WithHedging, a
	// hedge starts while the attempt it hedges is unanswered; an attempt that fails is reported when it fails,
	// the attempts that lost the race (OutcomeLost) once they have ended, and the attempt that settled the
	// request always last.
	AttemptDone func(Attempt)
	// Wait is called before the request waits for a resting backend to come back, or for one to have room in its
	// quota (see WithMaxWait and WithQuotaSteering), with how long it will wait.
	Wait func(time.Duration)
}

type traceKey struct{}

// WithTrace returns a context that carries trace to every request made with it.
func WithTrace(ctx context.Context, trace *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, trace)
}

// ContextTrace returns the trace carried by ctx, or nil.
func ContextTrace(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

// record collects a request's attempts for the Client's own use (a stream's region and headers).
type record struct {
	attempts []Attempt
}

type recordKey struct{}

func withRecord(ctx context.Context, r *record) context.Context {
	return context.WithValue(ctx, recordKey{}, r)
}

func recordOf(ctx context.Context) *record {
	r, _ := ctx.Value(recordKey{}).(*record)
	return r
}
