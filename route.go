package failover

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
)

// Strategy orders the regions that share a priority. Regions of a lower priority number are always tried before
// those of a higher one, and the OpenAI fallback last, whatever the strategy.
type Strategy uint8

const (
	// StrategyOrdered tries regions of one priority in their configured order (ascending N in the
	// environment). It is the default: the first region takes all the load it can.
	StrategyOrdered Strategy = iota
	// StrategyRoundRobin starts each request at the next region in turn, spreading load evenly.
	StrategyRoundRobin
	// StrategyWeighted starts each request at a region chosen at random in proportion to its Weight, then
	// tries the others in a weighted random order too (Azure API Management's random backend choice, weighted).
	StrategyWeighted
	// StrategyLeastLatency tries the region with the lowest moving average latency first. Regions not yet
	// measured come first, so that every region gets measured.
	StrategyLeastLatency
)

var strategyNames = [...]string{"ordered", "round-robin", "weighted", "least-latency"}

func (s Strategy) String() string {
	if int(s) < len(strategyNames) {
		return strategyNames[s]
	}
	return fmt.Sprintf("Strategy(%d)", uint8(s))
}

// ParseStrategy reads a strategy's name as String writes it: ordered, round-robin, weighted or least-latency.
func ParseStrategy(name string) (Strategy, error) {
	for i, n := range strategyNames {
		if strings.EqualFold(strings.TrimSpace(name), n) {
			return Strategy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown strategy; expected one of %s", strings.Join(strategyNames[:], ", "))
}

// tier is the backends of one priority, tried before those of the next tier.
type tier struct {
	backends []*backend
	next     atomic.Uint64 // round-robin position
}

// order appends to buf the backends in the order this request should try them.
func (e *engine) order(buf []*backend) []*backend {
	if e.strategy == StrategyOrdered {
		return e.backends // already sorted by priority, the fallback last
	}
	for _, t := range e.tiers {
		start := len(buf)
		buf = append(buf, t.backends...)
		group := buf[start:]
		if len(group) < 2 {
			continue
		}
		switch e.strategy {
		case StrategyRoundRobin:
			n := int((t.next.Add(1) - 1) % uint64(len(group)))
			slices.Reverse(group[:n]) // rotate left by n: three reversals, no allocation
			slices.Reverse(group[n:])
			slices.Reverse(group)
		case StrategyWeighted:
			weightedShuffle(group)
		case StrategyLeastLatency:
			slices.SortStableFunc(group, func(a, b *backend) int {
				return cmp.Compare(a.health.averageLatency(), b.health.averageLatency())
			})
		}
	}
	if e.fallback != nil {
		buf = append(buf, e.fallback)
	}
	return buf
}

// weightedShuffle puts the backends in a random order where each place goes to one of the remaining backends
// with probability proportional to its weight.
func weightedShuffle(group []*backend) {
	total := 0
	for _, b := range group {
		total += b.weight
	}
	for i := range group[:len(group)-1] {
		pick := rand.IntN(total)
		j := i
		for ; pick >= group[j].weight; j++ {
			pick -= group[j].weight
		}
		group[i], group[j] = group[j], group[i]
		total -= group[i].weight
	}
}

// averageLatency is the backend's moving average latency.
func (h *health) averageLatency() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(h.latency)
}
