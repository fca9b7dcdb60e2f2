package failover

import (
	"context"
	"fmt"
	"time"
)

// The request path's time helpers: sleep waits for a rest to end or the context to, whichever is first (a timer
// and a select, never time.Sleep); earliest and later compare times of which zero means never.

// earliest is the earlier of two times, where zero means never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sleep waits for d or until ctx ends, and reports whether it waited the whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
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

func canceled(ctx context.Context, attempts int) error {
	return fmt.Errorf("failover: request ended by its context (attempts made: %d): %w", attempts, ctx.Err())
}
