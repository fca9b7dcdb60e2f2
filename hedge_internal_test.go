package failover

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHedgerDefaults(t *testing.T) {
	assert.Nil(t, newHedger(nil))
	h := newHedger(&Hedging{Delay: time.Second})
	assert.Equal(t, 1, h.maxHedges, "MaxHedges 0: 1")
	assert.Equal(t, int64(math.Ceil(0.1*budgetUnit)), h.deposit, "MaxShare 0: 0.1, rounded up")
	assert.Equal(t, int64(maxHedgeBurst*budgetUnit), h.budget.Load(), "the budget starts full")
	h = newHedger(&Hedging{Delay: time.Second, MaxHedges: 3, MaxShare: 1})
	assert.Equal(t, 3, h.maxHedges)
	assert.Equal(t, int64(budgetUnit), h.deposit)
	assert.Equal(t, int64(maxHedgeBurst*budgetUnit), h.budget.Load())
}

func TestHedgerBudget(t *testing.T) {
	h := newHedger(&Hedging{Delay: time.Second}) // 0.1 a request
	// A new hedger holds maxHedgeBurst hedges, and a request's share is lost while the budget is full.
	h.fund()
	assert.Equal(t, int64(maxHedgeBurst*budgetUnit), h.budget.Load(), "the cap holds from the start")
	for i := range maxHedgeBurst {
		require.True(t, h.affordable(), "hedge %d", i+1)
		require.True(t, h.spend(), "hedge %d", i+1)
	}
	assert.False(t, h.affordable())
	assert.False(t, h.spend(), "the banked hedges, spent")
	assert.Zero(t, h.budget.Load())

	// From empty, ten requests fund a hedge.
	for i := 1; i < 10; i++ {
		h.fund()
		require.False(t, h.affordable(), "after %d requests", i)
		require.False(t, h.spend())
	}
	h.fund()
	assert.True(t, h.affordable(), "ten requests at 0.1 fund a hedge, rounding and all")
	assert.True(t, h.spend())
	assert.False(t, h.affordable())
	assert.False(t, h.spend(), "one hedge, spent")

	// The budget holds at most maxHedgeBurst hedges, however many requests fund it.
	for range 1000 {
		h.fund()
	}
	assert.Equal(t, int64(maxHedgeBurst*budgetUnit), h.budget.Load())
	for i := range maxHedgeBurst {
		require.True(t, h.spend(), "hedge %d", i+1)
	}
	assert.False(t, h.spend())
}

// TestHedgerBudgetShares: for every MaxShare, n requests that spend all they can fund floor(n × MaxShare)
// hedges from empty, exactly: the deposit is rounded up, and what it gains by that adds up to far less than a
// hedge over 200 requests. From a new hedger's full budget, they spend the maxHedgeBurst banked hedges too, and
// the first request's share is lost to the cap.
func TestHedgerBudgetShares(t *testing.T) {
	for _, share := range []float64{0.01, 0.05, 0.1, 0.25, 1.0 / 3, 0.5, 0.7, 1} {
		t.Run(fmt.Sprint(share), func(t *testing.T) {
			for _, start := range []struct {
				name  string
				empty bool
				want  func(requests int) int
			}{
				{"empty", true, func(n int) int { return int(math.Floor(float64(n)*share + 1e-9)) }},
				{"new", false, func(n int) int { return maxHedgeBurst + int(math.Floor(float64(n-1)*share+1e-9)) }},
			} {
				h := newHedger(&Hedging{Delay: time.Second, MaxShare: share})
				if start.empty {
					h.budget.Store(0)
				}
				n := 0
				for requests := 1; requests <= 200; requests++ {
					h.fund()
					for h.spend() {
						n++
					}
					require.Equal(t, start.want(requests), n, "from %s, after %d requests", start.name, requests)
				}
			}
		})
	}
}

// TestHedgerBudgetRoundingFundsEveryShare: from empty, n requests fund floor(n × MaxShare) hedges exactly. Were
// the deposit rounded to the nearest budget unit, a MaxShare such as 1/3 or 0.7 would deposit a little less than
// its share, and the request that completes a hedge would fall a few units short of it: for 1/3, 3 requests would
// fund no hedge, and for 0.7, 10 requests 6, not 7. The deposit is rounded up instead.
func TestHedgerBudgetRoundingFundsEveryShare(t *testing.T) {
	for _, share := range []float64{1.0 / 3, 0.7} {
		h := newHedger(&Hedging{Delay: time.Second, MaxShare: share})
		assert.GreaterOrEqual(t, float64(h.deposit), share*budgetUnit,
			"MaxShare %v: the deposit is the whole share", share)
		h.budget.Store(0) // from empty, where every unit counts
		n := 0
		for requests := 1; requests <= 10; requests++ {
			h.fund()
			for h.spend() {
				n++
			}
			assert.Equal(t, int(math.Floor(float64(requests)*share+1e-9)), n, "MaxShare %v, %d requests", share, requests)
		}
	}
}

// TestHedgerConcurrentBudget: requests that fund and spend the budget at once never spend a hedge twice, nor
// more than the budget held and they funded.
func TestHedgerConcurrentBudget(t *testing.T) {
	for _, start := range []int64{0, maxHedgeBurst} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			h := newHedger(&Hedging{Delay: time.Second, MaxShare: 0.5})
			h.budget.Store(start * budgetUnit)
			const n = 64
			spent := make(chan bool, n)
			for range n {
				go func() {
					h.fund()
					spent <- h.spend()
				}()
			}
			got := 0
			for range n {
				if <-spent {
					got++
				}
			}
			for h.spend() {
				got++
			}
			// However the goroutines interleave, the cap holds what was funded before it was spent, and nothing
			// is spent twice.
			assert.GreaterOrEqual(t, got, maxHedgeBurst)
			assert.LessOrEqual(t, got, int(start)+n/2, "never more hedges than held and funded")
			assert.Less(t, h.budget.Load(), int64(budgetUnit))
			assert.GreaterOrEqual(t, h.budget.Load(), int64(0))
		})
	}
}

func TestLatencyPercentile(t *testing.T) {
	var l latencies
	for i := 1; i < minLatencySamples; i++ {
		l.add(time.Duration(i) * time.Millisecond)
		_, ok := l.percentile(0.5)
		require.False(t, ok, "%d samples", i)
	}
	l.add(20 * time.Millisecond) // 1 ms … 20 ms
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.9, 18 * time.Millisecond}, {0.5, 10 * time.Millisecond}, {0.95, 19 * time.Millisecond},
		{0.99, 20 * time.Millisecond}, {0.01, time.Millisecond}, {0.999999, 20 * time.Millisecond}} {
		got, ok := l.percentile(tc.p)
		require.True(t, ok)
		assert.Equal(t, tc.want, got, "p%v", tc.p)
	}
}

func TestLatencyPercentileKeepsTheRecentSamples(t *testing.T) {
	var l latencies
	for range latencySamples {
		l.add(time.Hour) // old and slow
	}
	for range latencySamples {
		l.add(time.Millisecond) // recent and fast
	}
	got, ok := l.percentile(0.99)
	require.True(t, ok)
	assert.Equal(t, time.Millisecond, got, "only the last latencySamples count")
	// Half the ring slow again: the median is the slower.
	for range latencySamples / 2 {
		l.add(time.Second)
	}
	// The percentile is recomputed only once 8 samples have come in since; 32 have.
	got, _ = l.percentile(0.99)
	assert.Equal(t, time.Second, got)
	got, _ = l.percentile(0.4)
	assert.Equal(t, time.Millisecond, got)
}

func TestLatencyPercentileIsRecomputedEvery8Samples(t *testing.T) {
	var l latencies
	for range minLatencySamples {
		l.add(time.Millisecond)
	}
	got, _ := l.percentile(0.5)
	require.Equal(t, time.Millisecond, got)
	for i := 1; i < 8; i++ {
		l.add(time.Hour)
		got, _ = l.percentile(0.5)
		assert.Equal(t, time.Millisecond, got, "cached after %d new samples", i)
	}
	l.add(time.Hour) // 20 fast and 8 slow: the median is still fast, but p0.9 is slow
	got, _ = l.percentile(0.9)
	assert.Equal(t, time.Hour, got, "another percentile is computed at once")
	got, _ = l.percentile(0.5)
	assert.Equal(t, time.Millisecond, got)
}

func TestHedgerDelayFor(t *testing.T) {
	kind := latencyKind{model: "gpt-4o"}
	var b backend
	fixed := newHedger(&Hedging{Delay: 300 * time.Millisecond})
	d, ok := fixed.delayFor(&b, kind)
	assert.True(t, ok)
	assert.Equal(t, 300*time.Millisecond, d)

	learned := newHedger(&Hedging{Percentile: 0.5})
	_, ok = learned.delayFor(&b, kind)
	assert.False(t, ok, "no samples, no Delay: no hedging")
	floored := newHedger(&Hedging{Delay: 300 * time.Millisecond, Percentile: 0.5})
	for range minLatencySamples {
		b.health.sampleLatency(kind, 100*time.Millisecond)
	}
	d, ok = learned.delayFor(&b, kind)
	assert.True(t, ok)
	assert.Equal(t, 100*time.Millisecond, d)
	d, _ = floored.delayFor(&b, kind)
	assert.Equal(t, 300*time.Millisecond, d, "Delay is the floor")

	_, ok = learned.delayFor(&b, latencyKind{model: "gpt-4o", stream: true})
	assert.False(t, ok, "a stream's latencies are another kind")
	_, ok = learned.delayFor(&b, latencyKind{model: "gpt-4o-mini"})
	assert.False(t, ok, "another model's latencies are another kind")

	var slow backend
	for range minLatencySamples {
		slow.health.sampleLatency(kind, 2*time.Second)
	}
	d, _ = floored.delayFor(&slow, kind)
	assert.Equal(t, 2*time.Second, d, "a learned delay above Delay wins")
}

func TestSampleLatencyTracksBoundedKinds(t *testing.T) {
	var h health
	for i := range maxTrackedModels + 10 {
		h.sampleLatency(latencyKind{model: fmt.Sprint("model-", i)}, time.Millisecond)
	}
	assert.Len(t, h.latencies, maxTrackedModels, "made-up model names cannot grow the map without end")
	h.sampleLatency(latencyKind{model: "model-0"}, time.Millisecond)
	assert.Equal(t, 2, h.latencies[latencyKind{model: "model-0"}].n, "a kind already tracked is still sampled")
}
