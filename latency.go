package failover

import (
	"math"
	"slices"
	"time"
)

// A region's recent latencies, per model and kind of call: sampled from every served attempt, whether or not
// hedging is on, with the attempts the attempt timeout cut counted beside them, so that hedging (and any policy
// that learns a delay) can read them.

const (
	// minLatencySamples is how many latencies a region must have for a percentile of them to mean something.
	minLatencySamples = 20
	// latencySamples is how many recent latencies a region keeps per model and kind of call.
	latencySamples = 64
)

// latencyKind is what a region's latencies are kept by: calls of one model and kind take alike.
type latencyKind struct {
	model  string
	stream bool // time to a stream's first content, rather than to a whole answer
}

// latencies are a region's recent latencies of one kind, with a percentile computed from them when asked, and
// kept until the next few samples.
type latencies struct {
	samples [latencySamples]time.Duration
	n       int // samples taken, ever
	cut     int // attempts of this kind the attempt timeout cut before an answer, ever
	cached  time.Duration
	cachedP float64
	cachedN int
	last    time.Time // when the latest sample was taken
}

// add takes in a latency. Samples older than learnedHistory are dropped first: they no longer describe the
// region, and a percentile cached from them must not outlive them.
func (l *latencies) add(d time.Duration) {
	now := time.Now()
	if l.n > 0 && now.Sub(l.last) > learnedHistory {
		*l = latencies{}
	}
	l.samples[l.n%latencySamples] = d
	l.n++
	l.last = now
}

// learnedHistory is how long a region's latencies of a kind still teach its attempt limit after its latest
// served answer of that kind. Only served answers are samples, so a region whose model has become slower than
// its learned limit is cut every time and never sampled: once its history is this old it is back on the
// cold-start limit, and a slow answer there relearns its pace.
const learnedHistory = 10 * time.Minute

// learnedLatency is the p-th percentile of the backend's latencies of kind for its attempt limit: false while it
// has too few, or none served within learnedHistory of now.
func (h *health) learnedLatency(kind latencyKind, p float64, now time.Time) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.latencies[kind]; l != nil && now.Sub(l.last) <= learnedHistory {
		return l.percentile(p)
	}
	return 0, false
}

// percentile is the p-th percentile of the samples, recomputed once for every 8 new ones.
func (l *latencies) percentile(p float64) (time.Duration, bool) {
	if l.n < minLatencySamples {
		return 0, false
	}
	if l.cachedN == 0 || l.cachedP != p || l.n-l.cachedN >= 8 {
		var buf [latencySamples]time.Duration
		s := buf[:min(l.n, latencySamples)]
		copy(s, l.samples[:len(s)])
		slices.Sort(s)
		l.cached, l.cachedP, l.cachedN = s[min(int(math.Ceil(p*float64(len(s))))-1, len(s)-1)], p, l.n
	}
	return l.cached, true
}

// latencyBook is a region's latencies by kind. Kinds come from requests' model names: at most maxTrackedModels
// are kept, and samples of others are dropped.
type latencyBook map[latencyKind]*latencies

// of returns the latencies of kind, created when there is room; nil when there is none.
func (b *latencyBook) of(kind latencyKind) *latencies {
	if l := (*b)[kind]; l != nil {
		return l
	}
	return track(b, kind)
}
