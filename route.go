package failover

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"
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

// order appends to buf the backends in the order a request for model, of cost tokens, should try them: as the
// strategy says, then, when steering, the regions with room before those without (see steer). roomIn is how
// soon the first region will have room when none has it now (0 otherwise, and without steering).
func (e *engine) order(buf []*backend, model string, cost float64) (order []*backend, roomIn time.Duration) {
	order = e.byStrategy(buf)
	if e.steering {
		// StrategyOrdered's order is e.backends itself: it must be copied before it is changed.
		order, roomIn = steer(order, buf, e.strategy == StrategyOrdered, model, cost)
	}
	return order, roomIn
}

// steer puts the regions that, as far as their answers said, have room for a request of cost tokens before those
// that have none, keeping the order of each group, so that the request goes to the next priority's region with
// room before it pays for a 429 in this one's. The regions without room follow, soonest to have it first, and
// the OpenAI fallback stays last: it is for when every region is out, not close to it. A region that rests
// counts as without room until its rest ends. A shared order is copied to buf before it is changed. roomIn is how
// soon the first region that serves the model has room, when none has it now; 0 otherwise.
func steer(order, buf []*backend, shared bool, model string, cost float64) ([]*backend, time.Duration) {
	now := time.Now()
	var waits [8]time.Duration
	wait := waits[:0]
	short, roomy := false, false
	roomIn := time.Duration(math.MaxInt64)
	for _, b := range order {
		var d time.Duration
		switch {
		case b.fallback:
			d = math.MaxInt64
		case b.serves(model):
			d = b.health.roomFor(model, cost, now)
			short, roomy = short || d > 0, roomy || d == 0
			roomIn = min(roomIn, d)
		}
		wait = append(wait, d)
	}
	if !short {
		return order, 0
	}
	if shared {
		order = append(buf[:0], order...)
	}
	sortByLatency(order, wait)
	if roomy {
		roomIn = 0
	}
	return order, roomIn
}

// byStrategy appends to buf the backends in the order the strategy gives this request.
func (e *engine) byStrategy(buf []*backend) []*backend {
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
			now := time.Now()
			var buf [8]time.Duration
			latency := buf[:0]
			for _, b := range group {
				latency = append(latency, b.health.averageLatency(now))
			}
			sortByLatency(group, latency)
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

// sortByLatency sorts group by latency (the same length), keeping the order of equals: an insertion sort, since
// a priority holds a handful of regions. Steering sorts by the wait for room the same way.
func sortByLatency(group []*backend, latency []time.Duration) {
	for i := 1; i < len(group); i++ {
		for j := i; j > 0 && latency[j] < latency[j-1]; j-- {
			group[j], group[j-1] = group[j-1], group[j]
			latency[j], latency[j-1] = latency[j-1], latency[j]
		}
	}
}

// fallbackServes reports whether the OpenAI fallback can take a request for model.
func (e *engine) fallbackServes(model string) bool {
	return e.fallback != nil && e.fallback.serves(model)
}
