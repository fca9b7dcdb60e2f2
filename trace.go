package failover

import "context"

// Trace holds callbacks for the attempts of one request. Like net/http/httptrace's ClientTrace it travels in the
// request's context: attach it with WithTrace.
type Trace struct {
	// AttemptDone is called after every attempt, in order, on the goroutine that made the request, before the
	// next attempt starts. It must not block for long.
	AttemptDone func(Attempt)
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
