package failover

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// isRotation reports whether got is want rotated left by some amount.
func isRotation(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	doubled := append(slices.Clone(want), want...)
	for i := range want {
		if slices.Equal(doubled[i:i+len(want)], got) {
			return true
		}
	}
	return false
}

func TestWeightedShuffleFirstPlaceFollowsWeights(t *testing.T) {
	const n = 20000
	weights := []int{1, 2, 7}
	group := make([]*backend, len(weights))
	for i, w := range weights {
		group[i] = &backend{name: fmt.Sprintf("w%d", w), weight: w}
	}
	first := map[string]int{}
	second := map[string]int{}
	for range n {
		weightedShuffle(group)
		got := backendNames(group)
		require.ElementsMatch(t, []string{"w1", "w2", "w7"}, got, "every shuffle is a permutation")
		first[got[0]]++
		second[got[1]]++
	}
	for i, w := range weights {
		name := fmt.Sprintf("w%d", w)
		assert.InDelta(t, float64(w)/10, float64(first[name])/n, 0.02, "first place of %s", name)
		// Second place: one of the other two, drawn in proportion to the weights left.
		want := 0.0
		for j, o := range weights {
			if j != i {
				want += float64(o) / 10 * float64(w) / float64(10-o)
			}
		}
		assert.InDelta(t, want, float64(second[name])/n, 0.02, "second place of %s", name)
	}
}

func TestWeightedOrderKeepsTiersAndTheFallbackLast(t *testing.T) {
	e := routedEngine(t, StrategyWeighted, true, []int{0, 1, 0, 1, 0}, []int{1, 5, 2, 5, 7})
	firstPlace := map[string]int{}
	var buf [8]*backend
	const n = 20000
	for range n {
		got := backendNames(first(e.order(buf[:0], "m", 1)))
		require.Len(t, got, 6)
		assert.ElementsMatch(t, []string{"r0", "r2", "r4"}, got[:3], "priority 0 first")
		assert.ElementsMatch(t, []string{"r1", "r3"}, got[3:5], "then priority 1")
		require.Equal(t, OpenAIFallbackName, got[5], "the fallback is always last")
		firstPlace[got[0]]++
	}
	assert.InDelta(t, 0.1, float64(firstPlace["r0"])/n, 0.02)
	assert.InDelta(t, 0.2, float64(firstPlace["r2"])/n, 0.02)
	assert.InDelta(t, 0.7, float64(firstPlace["r4"])/n, 0.02)
	assert.Equal(t, []string{"r0", "r2", "r4", "r1", "r3", OpenAIFallbackName}, backendNames(e.backends),
		"ordering a request leaves the configured order as it was")
}

func TestWeightedShuffleOfOneIsANoOp(t *testing.T) {
	group := []*backend{{name: "only", weight: 3}}
	weightedShuffle(group)
	assert.Equal(t, []string{"only"}, backendNames(group))
}

func TestRoundRobinCoversEveryStartEqually(t *testing.T) {
	e := routedEngine(t, StrategyRoundRobin, true, []int{0, 0, 0, 1, 1}, nil)
	starts := map[string]int{}
	lowStarts := map[string]int{}
	var buf [8]*backend
	for i := range 300 {
		got := backendNames(first(e.order(buf[:0], "m", 1)))
		require.Len(t, got, 6)
		require.True(t, isRotation(got[:3], []string{"r0", "r1", "r2"}), "pass %d: %v", i, got)
		require.True(t, isRotation(got[3:5], []string{"r3", "r4"}), "pass %d: %v", i, got)
		require.Equal(t, OpenAIFallbackName, got[5], "the fallback is always last")
		starts[got[0]]++
		lowStarts[got[3]]++
		if i < 3 {
			assert.Equal(t, fmt.Sprintf("r%d", i), got[0], "the first request starts at the first region, then each in turn")
		}
	}
	assert.Equal(t, map[string]int{"r0": 100, "r1": 100, "r2": 100}, starts)
	assert.Equal(t, map[string]int{"r3": 150, "r4": 150}, lowStarts, "each tier rotates on its own")
}

func TestRoundRobinConcurrentCallsStayEven(t *testing.T) {
	e := routedEngine(t, StrategyRoundRobin, false, []int{0, 0, 0, 0}, nil)
	var mu sync.Mutex
	starts := map[string]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var buf [8]*backend
			local := map[string]int{}
			for range 100 {
				got := backendNames(first(e.order(buf[:0], "m", 1)))
				if !isRotation(got, []string{"r0", "r1", "r2", "r3"}) {
					t.Errorf("not a rotation: %v", got)
				}
				local[got[0]]++
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range local {
				starts[k] += v
			}
		})
	}
	wg.Wait()
	assert.Equal(t, map[string]int{"r0": 200, "r1": 200, "r2": 200, "r3": 200}, starts)
}

func TestOrderedIsTheConfiguredPriorityOrder(t *testing.T) {
	e := routedEngine(t, StrategyOrdered, true, []int{2, 0, 1, 0}, nil)
	var buf [8]*backend
	for range 3 {
		assert.Equal(t, []string{"r1", "r3", "r2", "r0", OpenAIFallbackName}, backendNames(first(e.order(buf[:0], "m", 1))))
	}
}

func TestLeastLatencyOrder(t *testing.T) {
	e := routedEngine(t, StrategyLeastLatency, true, []int{0, 0, 0, 1, 1}, nil)
	set := func(name string, ms int) {
		for _, b := range e.backends {
			if b.name == name {
				b.health.mu.Lock()
				b.health.latency = time.Duration(ms) * time.Millisecond
				b.health.measured = time.Now()
				b.health.mu.Unlock()
			}
		}
	}
	set("r0", 30)
	set("r2", 10)
	set("r3", 5)
	set("r4", 50)
	var buf [8]*backend
	assert.Equal(t, []string{"r1", "r2", "r0", "r3", "r4", OpenAIFallbackName}, backendNames(first(e.order(buf[:0], "m", 1))),
		"unmeasured first, then fastest, within each priority")
	set("r1", 20)
	assert.Equal(t, []string{"r2", "r1", "r0", "r3", "r4", OpenAIFallbackName}, backendNames(first(e.order(buf[:0], "m", 1))))

	// A measurement older than staleLatency no longer counts: that region is tried first, to measure it again.
	for _, b := range e.backends {
		if b.name == "r0" {
			b.health.measured = time.Now().Add(-staleLatency - time.Second)
		}
	}
	assert.Equal(t, []string{"r0", "r2", "r1", "r3", "r4", OpenAIFallbackName}, backendNames(first(e.order(buf[:0], "m", 1))))
}

func TestParseStrategy(t *testing.T) {
	for _, s := range []Strategy{StrategyOrdered, StrategyRoundRobin, StrategyWeighted, StrategyLeastLatency} {
		got, err := ParseStrategy(s.String())
		require.NoError(t, err)
		assert.Equal(t, s, got)
		got, err = ParseStrategy("  " + strings.ToUpper(s.String()) + "\t")
		require.NoError(t, err, "case and surrounding space do not matter")
		assert.Equal(t, s, got)
	}
	assert.Equal(t, []string{"ordered", "round-robin", "weighted", "least-latency"},
		[]string{StrategyOrdered.String(), StrategyRoundRobin.String(), StrategyWeighted.String(), StrategyLeastLatency.String()})
	assert.Equal(t, "Strategy(9)", Strategy(9).String())
	for _, bad := range []string{"", "fastest", "round robin", "roundrobin", "Strategy(1)", "1"} {
		_, err := ParseStrategy(bad)
		require.Error(t, err, "%q", bad)
		assert.Contains(t, err.Error(), "ordered, round-robin, weighted, least-latency")
	}
}

// first is an order without its wait for room.
func first(order []*backend, _ time.Duration) []*backend { return order }
