package failover

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestModelStatesAreBounded(t *testing.T) {
	var h health
	p := &restPolicy{backoff: func(int) time.Duration { return time.Second }, fault: time.Minute, missing: time.Hour}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i := range 3 * maxTrackedModels {
		h.failed(fmt.Sprintf("made-up-%d", i), ticket{start: now}, 404, verdict{kind: restMissing}, p, now)
	}
	assert.Len(t, h.models, maxTrackedModels, "made-up model names cannot grow the map without end")

	// Once their time is over, old entries make room for new ones.
	later := now.Add(2 * time.Hour)
	h.failed("gpt-4o", ticket{start: later}, 429, verdict{kind: restThrottled}, p, later)
	assert.Len(t, h.models, 1)
	assert.Contains(t, h.models, "gpt-4o")
}

func TestLateSuccessDoesNotEndANewerRest(t *testing.T) {
	var h health
	p := &restPolicy{backoff: func(int) time.Duration { return time.Minute }, fault: time.Minute, missing: time.Hour}
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	slow, _, ok := h.admit("gpt-4o", start) // a request that started before the 429
	assert.True(t, ok)
	h.failed("gpt-4o", ticket{start: start.Add(time.Second)}, 429, verdict{kind: restThrottled}, p, start.Add(time.Second))
	h.succeeded("gpt-4o", slow, true, 2*time.Second, start.Add(2*time.Second))
	_, back, ok := h.admit("gpt-4o", start.Add(3*time.Second))
	assert.False(t, ok, "the 429's rest stands")
	assert.Equal(t, start.Add(time.Second+time.Minute), back)
}

func TestConcurrentLongerRestStands(t *testing.T) {
	var h health
	p := &restPolicy{backoff: func(int) time.Duration { return time.Second }, fault: time.Minute, missing: time.Hour}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	h.failed("gpt-4o", ticket{start: now}, 429, verdict{kind: restThrottled, wait: time.Minute}, p, now)
	r, _ := h.failed("gpt-4o", ticket{start: now}, 500, verdict{kind: restFailing}, p, now)
	assert.Equal(t, now.Add(time.Minute), r.until, "the rest reported is the one that stands")
	_, back, _ := h.admit("gpt-4o", now)
	assert.Equal(t, now.Add(time.Minute), back)
}

func TestBurstOfInFlightFailuresCountsOnce(t *testing.T) {
	var h health
	var seen []int
	p := &restPolicy{backoff: func(n int) time.Duration { seen = append(seen, n); return time.Second }, fault: time.Minute, missing: time.Hour}
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	// Ten requests were sent before the first of them failed: they all fail with the same incident.
	for i := range 10 {
		now := start.Add(time.Duration(i) * time.Millisecond)
		h.failed("gpt-4o", ticket{start: start.Add(-time.Second)}, 500, verdict{kind: restFailing}, p, now)
	}
	assert.Equal(t, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, seen)
	// A probe sent after the rest and failing counts one more.
	probeStart := start.Add(2 * time.Second)
	probe, _, ok := h.admit("gpt-4o", probeStart)
	assert.True(t, ok)
	assert.NotNil(t, probe.modelProbe)
	h.failed("gpt-4o", probe, 500, verdict{kind: restFailing}, p, probeStart)
	assert.Equal(t, 2, seen[len(seen)-1])
}

func TestReleaseOnlyEndsTheClaimedProbe(t *testing.T) {
	var h health
	p := &restPolicy{backoff: func(int) time.Duration { return time.Second }, fault: time.Minute, missing: time.Hour}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	h.failed("gpt-4o", ticket{start: now}, 500, verdict{kind: restFailing}, p, now)
	first, _, ok := h.admit("gpt-4o", now.Add(2*time.Second))
	assert.True(t, ok, "the first probe")
	// A slow attempt from before sets a new rest; once it is over a second probe goes out.
	h.failed("gpt-4o", ticket{start: now}, 500, verdict{kind: restFailing}, p, now.Add(3*time.Second))
	second, _, ok := h.admit("gpt-4o", now.Add(5*time.Second))
	assert.True(t, ok)
	h.release(first) // the first probe's caller gives up: the second probe is still in flight
	_, back, ok := h.admit("gpt-4o", now.Add(5*time.Second))
	assert.False(t, ok, "only one probe in flight")
	assert.Equal(t, now.Add(5*time.Second+probePoll), back)
	h.release(second)
}

// TestLearnRecovered: news that another client's probe was served ends the shared rests set before it, and
// nothing else: not a newer rest, not a model found missing, not a rest for this client's own credentials.
func TestLearnRecovered(t *testing.T) {
	p := &restPolicy{backoff: func(int) time.Duration { return time.Second }, fault: time.Minute, missing: time.Hour}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	news := func(model string, at time.Time) Record {
		return Record{Model: model, Kind: RestRecovered, Since: at, Until: at.Add(2 * time.Second)}
	}
	var h health
	h.failed("old", ticket{start: now}, 500, verdict{kind: restFailing}, p, now)
	h.failed("newer", ticket{start: now}, 500, verdict{kind: restFailing}, p, now.Add(2*time.Second))
	h.failed("gone", ticket{start: now}, 404, verdict{kind: restMissing}, p, now)
	h.learn(news("old", now.Add(time.Second)), now.Add(time.Second))
	h.learn(news("newer", now.Add(time.Second)), now.Add(time.Second))
	h.learn(news("gone", now.Add(time.Second)), now.Add(time.Second))
	assert.NotContains(t, h.models, "old")
	assert.Contains(t, h.models, "newer", "a rest set after the probe was served stands")
	assert.Contains(t, h.models, "gone", "a missing model is not probed back")

	var fault health
	fault.failed("gpt-4o", ticket{start: now}, 401, verdict{kind: restFault}, p, now)
	fault.learn(news("", now.Add(time.Second)), now.Add(time.Second))
	assert.NotNil(t, fault.region, "another client's key working says nothing of this client's")

	var down health
	down.failed("gpt-4o", ticket{start: now}, 0, verdict{kind: restUnreachable}, p, now)
	down.learn(news("", now.Add(time.Second)), now.Add(time.Second))
	assert.Nil(t, down.region, "the region answered another client: its network is back")
}
