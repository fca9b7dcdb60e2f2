package failover

import (
	"context"
	"log/slog"
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

// reportAttempt tells the trace, the attempt hook, the request's record and the logger about an attempt. The callbacks
// run outside any lock.
func (e *engine) reportAttempt(ctx context.Context, trace *Trace, a Attempt) {
	if trace != nil && trace.AttemptDone != nil {
		trace.AttemptDone(a)
	}
	if e.onAttempt != nil {
		e.onAttempt(ctx, a)
	}
	if rec := recordOf(ctx); rec != nil {
		rec.attempts = append(rec.attempts, a)
	}
	if e.logger == nil {
		return
	}
	level := slog.LevelWarn // a backend failed
	switch a.Outcome {
	case OutcomeServed:
		level = slog.LevelDebug
	case OutcomeReturned, OutcomeCanceled, OutcomeLost, OutcomeNotHere:
		level = slog.LevelInfo // the request's, the caller's or hedging's doing, not a backend's
	}
	if !e.logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("region", a.Region),
		slog.String("deployment", a.Deployment),
		slog.Int("status", a.Status),
		slog.String("outcome", a.Outcome.String()),
		slog.Duration("duration", a.Duration),
	}
	if a.Rest > 0 {
		attrs = append(attrs, slog.Duration("rest", a.Rest))
	}
	if a.Err != nil {
		attrs = append(attrs, slog.String("error", a.Err.Error()))
	}
	e.logger.LogAttrs(ctx, level, "failover attempt", attrs...)
}

// report tells the trace, the hook, the request's record and the logger about an attempt (see reportAttempt),
// after a seek's pending "not here" (see flushPending). The zero Attempt reports only the pending one.
func (c *call) report(a Attempt) {
	if p := c.pending; p != nil {
		c.pending = nil
		c.made++
		c.e.reportAttempt(c.ctx, c.trace, *p)
	}
	if a.Outcome == 0 {
		return
	}
	c.made++
	c.e.reportAttempt(c.ctx, c.trace, a)
}

// flushPending reports a seek's pending "not here" as such: the seek went on, or ended otherwise.
func (c *call) flushPending() { c.report(Attempt{}) }
