package failover

import (
	"cmp"
	"math"
	"sync/atomic"
	"time"
)

// Hedging makes a request that its region is slow to answer go to the next region too, without waiting for the
// first to fail: whichever answers first serves it, and the other attempt is canceled. It cuts the slow tail of
// latency (a region that sometimes takes seconds for what it usually answers in milliseconds) for the price of
// the extra calls, which count against the regions' quotas and are billed when they run to the end. A stream is
// hedged on the time to its first content; the attempt that loses is canceled before any of its chunks reach the
// caller. Every field's zero value has a use.
type Hedging struct {
	// Delay is how long an attempt may go unanswered before the request is hedged to the next region. Zero: no
	// fixed delay, and Percentile must be set.
	Delay time.Duration
	// Percentile, above 0 and below 1 (0.95 for the 95th), learns the delay per region instead: that percentile
	// of the region's recent latencies for the same model and kind of call (the whole answer, or a stream's first
	// content), and not less than Delay. Until a region has 20 latencies of that kind (its answers, and the time
	// attempts canceled unanswered had taken), Delay alone applies, and the request is not hedged when it is zero.
	// Zero: Delay alone.
	Percentile float64
	// MaxHedges is the most hedges one request sends. Zero: 1.
	MaxHedges int
	// MaxShare bounds the share of requests hedged, from 0 to 1: every request adds MaxShare to a budget that
	// holds up to 10 hedges (and starts with 10), and every hedge takes one from it. Zero: 0.1.
	MaxShare float64
}

// WithHedging hedges slow requests as h says: see Hedging. Default: no hedging. The environment's
// FAILOVER_HEDGE_DELAY and FAILOVER_HEDGE_PERCENTILE set it too.
func WithHedging(h Hedging) Option {
	return func(s *settings) { s.hedging = &h }
}

const (
	// maxHedgeBurst bounds the hedging budget, and is what a new client starts with: after a quiet spell,
	// this many hedges are banked (plus the shares the requests of a burst add as they come).
	maxHedgeBurst = 10
	// budgetUnit is one hedge in the budget's fixed-point count.
	budgetUnit = 1 << 20
)

// hedger is the engine's hedging policy and its budget.
type hedger struct {
	delay      time.Duration
	percentile float64
	maxHedges  int
	deposit    int64        // what each request adds to the budget, in budgetUnits
	budget     atomic.Int64 // in budgetUnits
}

// hedgingErrs checks the settings of WithHedging.
func (s *settings) hedgingErrs() []error {
	h := s.hedging
	if h == nil {
		return nil
	}
	var errs []error
	if h.Delay < 0 {
		errs = append(errs, configErr("WithHedging(Delay)", "is %s; expected 0 or more", h.Delay))
	}
	if !(h.Percentile >= 0 && h.Percentile < 1) {
		errs = append(errs, configErr("WithHedging(Percentile)", "is %v; expected 0 (no learning) or a fraction below 1, such as 0.95", h.Percentile))
	}
	if h.Delay == 0 && h.Percentile == 0 {
		errs = append(errs, configErr("WithHedging", "has neither a Delay nor a Percentile; expected one of them or both"))
	}
	if h.MaxHedges < 0 {
		errs = append(errs, configErr("WithHedging(MaxHedges)", "is %d; expected 0 (for 1) or more", h.MaxHedges))
	}
	if !(h.MaxShare >= 0 && h.MaxShare <= 1) {
		errs = append(errs, configErr("WithHedging(MaxShare)", "is %v; expected a fraction from 0 (for 0.1) to 1", h.MaxShare))
	}
	return errs
}

func newHedger(h *Hedging) *hedger {
	if h == nil {
		return nil
	}
	out := &hedger{delay: h.Delay, percentile: h.Percentile, maxHedges: cmp.Or(h.MaxHedges, 1)}
	out.deposit = int64(math.Ceil(cmp.Or(h.MaxShare, 0.1) * budgetUnit))
	out.budget.Store(maxHedgeBurst * budgetUnit) // a new client may hedge its first slow requests
	return out
}

// fund adds one request's share to the budget.
func (h *hedger) fund() {
	for {
		b := h.budget.Load()
		next := min(b+h.deposit, maxHedgeBurst*budgetUnit)
		if next == b || h.budget.CompareAndSwap(b, next) {
			return
		}
	}
}

// affordable reports whether the budget holds a hedge now.
func (h *hedger) affordable() bool { return h.budget.Load() >= budgetUnit }

// spend takes a hedge from the budget, if it holds one.
func (h *hedger) spend() bool {
	for {
		b := h.budget.Load()
		if b < budgetUnit {
			return false
		}
		if h.budget.CompareAndSwap(b, b-budgetUnit) {
			return true
		}
	}
}

// delayFor is how long an attempt at b for kind may go unanswered before it is hedged; false when it is not to
// be hedged.
func (h *hedger) delayFor(b *backend, kind latencyKind) (time.Duration, bool) {
	d := h.delay
	if h.percentile > 0 {
		if p, ok := b.health.latencyPercentile(kind, h.percentile); ok {
			d = max(d, p)
		}
	}
	return d, d > 0
}
