package gateway

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aoai-failover/failover"
)

// metrics counts what the gateway does, for /metrics in Prometheus's text format. Labels are bounded: regions
// come from the configuration, statuses and operations from small sets; models, which callers choose, are never
// labels.
type metrics struct {
	streamCuts atomic.Uint64
	refused    [refusals]atomic.Uint64    // by refusal
	shed       [shedReasons]atomic.Uint64 // by the limit met
	// connections are those open on Gateway.Listener's listeners; connectionWaits counts the accepts that waited
	// for one of them to close.
	connections     atomic.Int64
	connectionWaits atomic.Uint64

	mu         sync.Mutex
	requests   map[[3]string]uint64 // api, operation, status
	attempts   map[[3]string]uint64 // region, outcome, status
	rests      map[[3]string]uint64 // region, status
	failovers  map[[3]string]uint64 // region that served after another failed
	requestDur map[string]*histogram
	attemptDur map[string]*histogram
}

func newMetrics() *metrics {
	return &metrics{
		requests:   make(map[[3]string]uint64),
		attempts:   make(map[[3]string]uint64),
		rests:      make(map[[3]string]uint64),
		failovers:  make(map[[3]string]uint64),
		requestDur: make(map[string]*histogram),
		attemptDur: make(map[string]*histogram),
	}
}

// latencyBuckets suit model calls: tens of milliseconds for embeddings, up to minutes for long answers.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

type histogram struct {
	counts []uint64 // per bucket, not cumulative
	sum    float64
	count  uint64
}

func (h *histogram) observe(seconds float64) {
	i, _ := slices.BinarySearch(latencyBuckets, seconds)
	if i < len(h.counts) {
		h.counts[i]++
	}
	h.sum += seconds
	h.count++
}

func observe(m map[string]*histogram, key string, d time.Duration) {
	h := m[key]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets))}
		m[key] = h
	}
	h.observe(d.Seconds())
}

// request records one finished request and its attempts.
func (m *metrics) request(api, operation string, status int, d time.Duration, attempts []failover.Attempt) {
	statusText := strconv.Itoa(status)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[[3]string{api, operation, statusText}]++
	observe(m.requestDur, operation, d)
	failedOver := false // an earlier attempt failed: a hedge that won over a slow one is no failover
	for _, a := range attempts {
		m.attempts[[3]string{a.Region, a.Outcome.String(), strconv.Itoa(a.Status)}]++
		observe(m.attemptDur, a.Region, a.Duration)
		if a.Rest > 0 {
			m.rests[[3]string{a.Region, strconv.Itoa(a.Status)}]++
		}
		if failedOver && a.Outcome == failover.OutcomeServed {
			m.failovers[[3]string{a.Region}]++
		}
		failedOver = failedOver || a.Outcome == failover.OutcomeFailedOver
	}
}

// write writes every metric in Prometheus's text exposition format, with the state of client's regions and store,
// what lim holds, and the Go runtime's, to b.
func (m *metrics) write(b *bytes.Buffer, client *failover.Client, lim *budget) {
	health := client.Health()
	m.mu.Lock()
	family(b, "aoai_gateway_requests_total", "counter", "Requests answered, by API shape, operation and status.")
	counters(b, "aoai_gateway_requests_total", []string{"api", "operation", "status"}, m.requests)
	family(b, "aoai_gateway_attempts_total", "counter", "Upstream attempts, by region, outcome and upstream status (0: no answer).")
	counters(b, "aoai_gateway_attempts_total", []string{"region", "outcome", "status"}, m.attempts)
	family(b, "aoai_gateway_failovers_total", "counter", "Requests served by a region after another had failed them, by the region that served.")
	counters(b, "aoai_gateway_failovers_total", []string{"region"}, m.failovers)
	family(b, "aoai_gateway_rests_total", "counter", "Attempts that set a region or model to rest, by region and upstream status.")
	counters(b, "aoai_gateway_rests_total", []string{"region", "status"}, m.rests)
	family(b, "aoai_gateway_request_duration_seconds", "histogram", "Time from a request's arrival to the end of its answer, streams included, by operation.")
	histograms(b, "aoai_gateway_request_duration_seconds", "operation", m.requestDur)
	family(b, "aoai_gateway_attempt_duration_seconds", "histogram", "Duration of upstream attempts (to a stream's first content), by region.")
	histograms(b, "aoai_gateway_attempt_duration_seconds", "region", m.attemptDur)
	m.mu.Unlock()

	family(b, "aoai_gateway_stream_cuts_total", "counter", "Streams the region cut after their first content, which ended with a stream_cut error event (not streams their caller left, nor those that ran out of request time).")
	fmt.Fprintf(b, "aoai_gateway_stream_cuts_total %d\n", m.streamCuts.Load())
	family(b, "aoai_gateway_refused_total", "counter", "Requests the gateway refused itself, before any region was asked, by reason: an unknown path, a method the path does not allow, a body over its limit, no valid gateway key.")
	for why := range refusals {
		fmt.Fprintf(b, "aoai_gateway_refused_total{reason=%s} %d\n", label(why.String()), m.refused[why].Load())
	}
	m.writeLimits(b, lim)
	family(b, "aoai_gateway_region_resting", "gauge", "1 while the whole region rests (401/403, no answer, no token), else 0.")
	for _, r := range health {
		fmt.Fprintf(b, "aoai_gateway_region_resting{region=%s} %d\n", label(r.Region), boolInt(r.State == failover.StateResting))
	}
	family(b, "aoai_gateway_region_models_unavailable", "gauge", "Models resting, being probed or learned missing on the region.")
	for _, r := range health {
		fmt.Fprintf(b, "aoai_gateway_region_models_unavailable{region=%s} %d\n", label(r.Region), len(r.Models))
	}
	if shared, reachable := client.Sharing(); shared {
		family(b, "aoai_gateway_store_reachable", "gauge", "1 while the store the gateway shares rests through (FAILOVER_REDIS_URL) answers, else 0.")
		fmt.Fprintf(b, "aoai_gateway_store_reachable %d\n", boolInt(reachable))
	}
	writeRuntime(b)
}

func family(b *bytes.Buffer, name, kind, help string) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
}

// counters writes one sample per label set, sorted so the output is stable; names label the first values of each
// key.
func counters(b *bytes.Buffer, name string, names []string, m map[[3]string]uint64) {
	keys := slices.SortedFunc(maps.Keys(m), func(x, y [3]string) int {
		return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1]), cmp.Compare(x[2], y[2]))
	})
	for _, k := range keys {
		b.WriteString(name)
		b.WriteByte('{')
		for i, n := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
			b.WriteByte('=')
			b.WriteString(label(k[i]))
		}
		fmt.Fprintf(b, "} %d\n", m[k])
	}
}

func histograms(b *bytes.Buffer, name, labelName string, m map[string]*histogram) {
	for _, key := range slices.Sorted(maps.Keys(m)) {
		h := m[key]
		l := labelName + "=" + label(key)
		var cumulative uint64
		for i, le := range latencyBuckets {
			cumulative += h.counts[i]
			fmt.Fprintf(b, "%s_bucket{%s,le=\"%s\"} %d\n", name, l, strconv.FormatFloat(le, 'g', -1, 64), cumulative)
		}
		fmt.Fprintf(b, "%s_bucket{%s,le=\"+Inf\"} %d\n", name, l, h.count)
		fmt.Fprintf(b, "%s_sum{%s} %s\n", name, l, strconv.FormatFloat(h.sum, 'g', -1, 64))
		fmt.Fprintf(b, "%s_count{%s} %d\n", name, l, h.count)
	}
}

// label quotes a label value as the exposition format asks: backslash, double quote and newline escaped.
func label(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v) + `"`
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
