package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/aoai-failover/failover"
)

// exchange is one proxied request: what it learned, for its log line and metrics, and what it holds of the budget
// until it ends. The client reports attempts on the request's own goroutine, before Do returns, so it needs no
// lock. A stream the gateway took over (takeOver) ends its request when it ends, after the handler returned.
type exchange struct {
	attempts     []failover.Attempt
	start        time.Time
	rt           route
	method, path string
	held         int64      // the body's bytes in the budget
	answers      answerHold // the buffered answers' bytes in the budget
	cancel       context.CancelFunc
	untie        func() bool // stops the handler's context from ending the request's
	takenOver    bool
	ended        bool // end ran (a taken-over stream's request)
}

func (ex *exchange) add(a failover.Attempt) { ex.attempts = append(ex.attempts, a) }

// begin is the request's context: it ends at timeout or at the handler's context's deadline (a middleware's, say),
// or when the handler's context ends (the caller hung up, or the handler returned), until untie: a stream the
// gateway took over outlives its handler, and from then on its watch stands for the caller's hanging up.
func (ex *exchange) begin(handler context.Context, timeout time.Duration) context.Context {
	deadline := ex.start.Add(timeout)
	if d, ok := handler.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(handler), deadline)
	ex.cancel, ex.untie = cancel, context.AfterFunc(handler, cancel)
	return ctx
}

// release ends the request's context and gives back what it held.
func (ex *exchange) release(b *budget) {
	ex.cancel()
	ex.untie()
	b.free(ex.held)
	ex.answers.free(b)
	b.leave()
}

// account counts the request, which ended with status, in the metrics and logs it.
func (g *Gateway) account(ctx context.Context, ex *exchange, status int) {
	d := time.Since(ex.start)
	g.metrics.request(ex.rt.api, ex.rt.operation, status, d, ex.attempts)
	if g.cfg.Logger != nil {
		attrs := []slog.Attr{slog.String("method", ex.method), slog.String("path", ex.path), slog.Int("status", status),
			slog.Int("attempts", len(ex.attempts)), slog.Duration("duration", d)}
		if n := len(ex.attempts); n > 0 {
			attrs = append(attrs, slog.String("region", ex.attempts[n-1].Region))
		}
		g.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "aoai-gateway request", attrs...)
	}
}

// end ends a request whose stream the gateway took over: accounted for, then released (also if accounting
// panics: a Logger's handler may).
func (g *Gateway) end(ctx context.Context, ex *exchange, status int) {
	ex.ended = true
	defer ex.release(g.budget)
	g.account(ctx, ex, status)
}
