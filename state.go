package failover

import (
	"net/http"
	"sync"
	"time"
)

// A region's state machine, in the manner of sony/gobreaker: everything a backend's answers taught (rests,
// probes, missing models, quota meters, latencies) is declared here and changed only by the methods below, under
// one mutex, and every state is computed from timestamps when asked. The meters (quota.go, meter.go) and latency
// samples (latency.go) are small types of their own, owned by health and changed only through it; the public
// snapshot of all this (Client.Health) is in health.go.

// health is one backend's memory: its rests, the models it lacks, its latency. One mutex guards it, and every
// state is computed from timestamps when asked: there are no timers and no goroutines.
type health struct {
	mu       sync.Mutex
	region   *rest            // the rest of the whole backend; nil when there is none
	models   map[string]*rest // rests and missing marks, per model
	latency  time.Duration    // moving average of served attempts; 0 before the first
	measured time.Time        // when latency was last updated
	// answered is when the last attempt that the backend answered properly started: a shared rest of the whole
	// backend (no answer at all) that is older is another client's network path, not this one's.
	answered    time.Time
	faultLogged bool        // the current fault rest has been logged; cleared when the backend serves
	quotas      quotaBook   // what answers said of each model's rate limit (see quota.go)
	latencies   latencyBook // recent latencies and cut attempts, by kind of call (see latency.go)
}

// ticket is what an admitted attempt claimed: it must be settled with success, failure or release.
type ticket struct {
	start                   time.Time
	regionProbe, modelProbe *rest     // the rests whose probe this attempt is; nil when it is none
	claimed                 bool      // the probes are claimed in the Store too
	quota                   quotaMark // what the attempt was charged against the model's rate limit
}

// admit decides whether an attempt for model may go to the backend now. In half-open state the attempt becomes
// the probe, and every other request passes the backend over until the probe settles. When the attempt may not
// go, admit returns when the backend can be tried again: zero when that is not known (a probe is in flight) or not
// soon (the model is missing).
func (h *health) admit(model string, now time.Time) (ticket, time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.models[model]
	if m != nil && m.kind == restMissing && !now.Before(m.until) {
		delete(h.models, model) // forgotten: the model may have been deployed since
		m = nil
	}
	rs, ms := h.region.state(now), m.state(now)
	switch {
	case ms == StateMissing:
		return ticket{}, time.Time{}, false // not back soon, whatever the region's own rest
	case rs == StateResting && ms == StateResting:
		return ticket{}, later(h.region.until, m.until), false
	case rs == StateResting:
		return ticket{}, h.region.until, false
	case ms == StateResting:
		return ticket{}, m.until, false
	case rs == StateProbing || ms == StateProbing:
		// Back when the probe settles: look again shortly.
		return ticket{}, now.Add(probePoll), false
	}
	t := ticket{start: now}
	if rs == StateHalfOpen {
		t.regionProbe, h.region.probing = h.region, true
	}
	if ms == StateHalfOpen {
		t.modelProbe, m.probing = m, true
	}
	return t, time.Time{}, true
}

// releaseLocked ends t's probes without a verdict. Only the rests t claimed are released: a rest set since by
// another attempt keeps its own probe. The caller holds h.mu.
func (h *health) releaseLocked(t ticket) {
	if t.regionProbe != nil {
		t.regionProbe.probing = false
	}
	if t.modelProbe != nil {
		t.modelProbe.probing = false
	}
}

// probePoll is how soon a request waiting for a backend whose probe is in flight looks again.
const probePoll = 250 * time.Millisecond

// release ends t's probes without a verdict: the caller gave up.
func (h *health) release(t ticket) {
	h.mu.Lock()
	h.releaseLocked(t)
	h.mu.Unlock()
}

// succeeded records that the backend answered a request for model properly (served it, or refused it as the
// request's own fault). Rests set before the attempt started end; a later one stands. served adds d to the latency
// average.
func (h *health) succeeded(model string, t ticket, served bool, d time.Duration, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.releaseLocked(t)
	if h.region != nil && h.region.since.Before(t.start) {
		h.region, h.faultLogged = nil, false
	}
	if m := h.models[model]; m != nil && m.kind != restMissing && m.since.Before(t.start) {
		delete(h.models, model)
	}
	h.answered = later(h.answered, t.start)
	if served {
		h.measureLocked(d, now)
	}
}

// measure adds d to the latency average: an answer's latency, or the time an attempt canceled unanswered
// had taken, which the latency is at least.
func (h *health) measure(d time.Duration, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.measureLocked(d, now)
}

// measureLocked is measure for a caller that holds h.mu.
func (h *health) measureLocked(d time.Duration, now time.Time) {
	if h.latency == 0 {
		h.latency = d
	} else {
		h.latency += (d - h.latency) / 5 // an exponential moving average over about the last five
	}
	h.measured = now
}

// failed records a failed attempt with verdict v and returns the rest of the backend (or of the model on it) that
// stands now, zero when none was recorded, and whether this is a fault that has not been logged yet.
func (h *health) failed(model string, t ticket, status int, v verdict, p *restPolicy, now time.Time) (rest, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.releaseLocked(t)
	if v.kind == restMissing {
		r := &rest{kind: restMissing, status: status, since: now, until: now.Add(p.missing)}
		if !h.setModelLocked(model, r, now) {
			return rest{}, false
		}
		return *r, false
	}
	if !v.kind.wholeRegion() {
		h.answered = later(h.answered, t.start) // an answer, if not a good one: the network to the backend works
		if h.region != nil && h.region.kind == restUnreachable && h.region.since.Before(t.start) {
			h.region = nil // the backend answered: its network is back
		}
	}
	prev := h.region
	if !v.kind.wholeRegion() {
		prev = h.models[model]
	}
	r := &rest{kind: v.kind, status: status, since: now, failures: 1}
	if prev != nil && prev.kind != restMissing {
		// Attempts sent before the current rest was set fail with it, not after it: a burst of them counts once,
		// or a one-second problem under load would rest the backend for a minute.
		r.failures = prev.failures
		if !t.start.Before(prev.since) {
			r.failures++
		}
	}
	d := v.wait
	switch {
	case d > 0:
	case v.kind == restFault:
		d = p.fault
	default:
		d = max(p.backoff(r.failures), 0)
	}
	r.until = now.Add(d)
	if prev != nil {
		r.until = later(r.until, prev.until) // a concurrent attempt set a longer rest: it stands
	}
	logFault := false
	if v.kind.wholeRegion() {
		h.region = r
		logFault = v.kind == restFault && !h.faultLogged
		h.faultLogged = h.faultLogged || logFault
	} else if !h.setModelLocked(model, r, now) {
		return rest{}, false
	}
	return *r, logFault
}

// learn takes in a rest another client shared through the Store when it ends later than this client's own (as
// in the Store, and in failed, the longer rest stands). A rest of the whole backend is not taken in when the
// backend answered this client after it was set: that one had no answer over its own network, and, as in
// succeeded, an answer ends it. A rest of a model is: a 429's Retry-After holds for the deployment, whoever asks.
func (h *health) learn(rec Record, now time.Time) {
	if rec.Kind == RestRecovered {
		h.recovered(rec)
		return
	}
	kind, ok := restKindOf(rec.Kind)
	if !ok || kind.wholeRegion() != (rec.Model == "") {
		return // a kind this version does not know, or a record that does not fit its kind
	}
	r := &rest{kind: kind, status: rec.Status, since: rec.Since, until: rec.Until, failures: rec.Failures}
	h.mu.Lock()
	defer h.mu.Unlock()
	if rec.Model == "" {
		if rec.Since.After(h.answered) && (h.region == nil || r.until.After(h.region.until)) {
			h.region = r
		}
		return
	}
	if cur := h.models[rec.Model]; cur == nil || r.until.After(cur.until) {
		h.setModelLocked(rec.Model, r, now)
	}
}

// recovered ends the shared rests of rec's scope that were set before another client's probe was served. Rests
// that depend on this client's own credentials are not shared, and stay.
func (h *health) recovered(rec Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	over := func(r *rest) bool {
		if r == nil {
			return false
		}
		_, shared := r.kind.shared()
		return shared && r.kind != restMissing && r.since.Before(rec.Since)
	}
	if rec.Model == "" {
		if over(h.region) {
			h.region = nil
		}
		return
	}
	if over(h.models[rec.Model]) {
		delete(h.models, rec.Model)
	}
}

// heldElsewhere ends t's probes without a verdict because another client probes: the rests pass the backend
// over until then.
func (h *health) heldElsewhere(t ticket, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range [...]*rest{t.regionProbe, t.modelProbe} {
		if r != nil {
			r.probing, r.heldUntil = false, until
		}
	}
}

// skipped describes why the backend does not serve model now, if it does not.
func (h *health) skipped(model string, now time.Time) (Skip, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range [...]*rest{h.region, h.models[model]} {
		switch s := r.state(now); s {
		case StateResting, StateMissing:
			return Skip{State: s, Until: r.until, Reason: r.reason(), kind: r.kind}, true
		case StateProbing:
			return Skip{State: s, Reason: r.reason(), kind: r.kind}, true
		}
	}
	return Skip{}, false
}

// charge counts a request of cost tokens for model as sent now.
func (h *health) charge(model string, cost float64, now time.Time) quotaMark {
	h.mu.Lock()
	defer h.mu.Unlock()
	if q := h.quotas.at(model, now, true); q != nil {
		return q.charge(cost, now)
	}
	return quotaMark{}
}

// heard takes in what an answer to a request charged with mark says of model's rate limit (see quota.heard).
func (h *health) heard(model string, status int, header http.Header, mark quotaMark, retry time.Duration, now time.Time) {
	l, ok := limitsOf(header)
	if !ok || mark.cost == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if q := h.quotas.at(model, now, true); q != nil {
		q.heard(l, status == http.StatusTooManyRequests, mark, retry, now)
	}
}

// uncount takes back a request's charge: it was never sent.
func (h *health) uncount(model string, mark quotaMark) {
	if mark.cost == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if q := h.quotas[model]; q != nil {
		q.uncount(mark)
	}
}

// roomFor reports how long until model has room for a request of cost tokens on this backend, as far as its
// answers said: 0 when it has room now, or when nothing is known. A rest counts as no room until it ends.
func (h *health) roomFor(model string, cost float64, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var d time.Duration
	for _, r := range [...]*rest{h.region, h.models[model]} {
		switch r.state(now) {
		case StateResting, StateMissing:
			d = max(d, r.until.Sub(now))
		case StateProbing:
			d = max(d, probePoll)
		}
	}
	if q := h.quotas.at(model, now, false); q != nil {
		d = max(d, q.requests.shortBy(1, now), q.tokens.shortBy(cost, now))
	}
	return d
}

// sampleLatency records how long an attempt of kind took on the backend: the whole answer or a stream's first
// content, or how long a canceled attempt had gone unanswered (the latency is at least that).
func (h *health) sampleLatency(kind latencyKind, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.latencies.of(kind); l != nil {
		l.add(d)
	}
}

// cutAttempt counts an attempt of kind that the attempt timeout cut before the backend answered.
func (h *health) cutAttempt(kind latencyKind) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.latencies.of(kind); l != nil {
		l.cut++
	}
}

// latencyPercentile is the p-th percentile of the backend's recent latencies of kind; false while it has too few.
func (h *health) latencyPercentile(kind latencyKind, p float64) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.latencies[kind]; l != nil {
		return l.percentile(p)
	}
	return 0, false
}

// staleLatency is when a latency measurement no longer counts: a region that was slow once would otherwise
// never be tried, and so never measured, again while a faster one serves.
const staleLatency = 30 * time.Second

// averageLatency is the backend's moving average latency, or 0 (try it first, and measure it) when it has no
// recent measurement.
func (h *health) averageLatency(now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.measured) > staleLatency {
		return 0
	}
	return h.latency
}
