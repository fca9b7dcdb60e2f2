package failover

import (
	"context"
	"time"
)

// Trace holds callbacks for the attempts of one request. Like net/http/httptrace's ClientTrace it travels in the
// request's context: attach it with WithTrace.
type Trace struct {
	// AttemptDone is called after every attempt, in order, on the goroutine that made the request, before the
	// next attempt starts. It must not block for long.
	AttemptDone func(Attempt)
	// Wait is called before the request waits for a resting backend to come back (see WithMaxWait), with how
	// long it will wait.
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
