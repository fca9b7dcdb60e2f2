package failover

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// State is what a region, or one model on it, can do now.
type State uint8

const (
	// StateServing: requests go to it.
	StateServing State = iota
	// StateResting: no request goes to it until its rest is over.
	StateResting
	// StateHalfOpen: a rest for errors is over; the next request goes to it as a probe, whose success returns it
	// to StateServing and whose failure rests it longer.
	StateHalfOpen
	// StateProbing: a probe is in flight; other requests pass it over until the probe settles.
	StateProbing
	// StateMissing: the model is not deployed in the region (learned from a 404); requests for it go elsewhere.
	StateMissing
)

func (s State) String() string {
	switch s {
	case StateServing:
		return "serving"
	case StateResting:
		return "resting"
	case StateHalfOpen:
		return "half-open"
	case StateProbing:
		return "probing"
	case StateMissing:
		return "missing"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// MarshalText writes the state as String does, so it reads well in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// RegionHealth is one region's state at one moment, as Client.Health reports it.
type RegionHealth struct {
	// Region is the region's name, or OpenAIFallbackName.
	Region string `json:"region"`
	// Priority and Weight are the region's configured values (see Region).
	Priority int `json:"priority"`
	Weight   int `json:"weight"`
	// State is the state of the region as a whole: StateResting after an answer that faults every model (401,
	// 403, insufficient_quota), no answer at all, or no Entra ID token. A region whose declared models
	// (Region.Deployments) all rest, are probed or are missing can serve nothing either: it has the state of the
	// model that comes back first, with that model's Until and, in Reason, its name and reason.
	State State `json:"state"`
	// Until is when the region's rest ends; zero when it is not resting.
	Until time.Time `json:"until,omitzero"`
	// Reason says why the region rests or rested, such as "401: credentials rejected"; empty when serving.
	Reason string `json:"reason,omitempty"`
	// Latency is the moving average of the region's served attempts (time to the whole answer, or to a stream's
	// first content); 0 before the first.
	Latency time.Duration `json:"latency_ns"`
	// Models lists the models whose state on this region is not plain serving: resting, half-open, probing or
	// missing; sorted by model.
	Models []ModelHealth `json:"models,omitempty"`
}

// ModelHealth is the state of one model on one region.
type ModelHealth struct {
	Model  string    `json:"model"`
	State  State     `json:"state"`
	Until  time.Time `json:"until,omitzero"` // when the rest ends, or when a missing model is tried again
	Reason string    `json:"reason"`         // such as "429 rate limited" or "404: model not deployed here"
}

// Health reports the state of every region now, in the order of Regions: which are serving, which rest until
// when and why, which models each was found to lack, and their latency. It is cheap and safe to call often,
// from a health endpoint for example.
func (c *Client) Health() []RegionHealth {
	now := time.Now()
	out := make([]RegionHealth, len(c.engine.backends))
	for i, b := range c.engine.backends {
		out[i] = b.health.snapshot(now)
		out[i].Region, out[i].Priority, out[i].Weight = b.name, b.priority, b.weight
		if out[i].State == StateServing && b.declared && len(out[i].Models) >= len(b.deployments) {
			out[i].takeFirstBack(b.deployments)
		}
	}
	return out
}

// takeFirstBack gives a serving region whose declared models all are out the state of the one back first.
func (rh *RegionHealth) takeFirstBack(declared map[string]string) {
	// Half-open and probing models are nearly back; a missing one is furthest away: the states' own order.
	rank := func(s State) int {
		return [...]int{StateHalfOpen: 0, StateProbing: 1, StateResting: 2, StateMissing: 3}[s]
	}
	var first *ModelHealth
	out := 0
	for i := range rh.Models {
		m := &rh.Models[i]
		if _, ok := declared[m.Model]; !ok {
			continue
		}
		out++
		if first == nil || rank(m.State) < rank(first.State) ||
			rank(m.State) == rank(first.State) && m.Until.Before(first.Until) {
			first = m
		}
	}
	if out < len(declared) {
		return // a declared model serves
	}
	rh.State, rh.Until, rh.Reason = first.State, first.Until, first.Model+": "+first.Reason
}

// String shows the region's state in a line, without the times that are not set.
func (rh RegionHealth) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", rh.Region, rh.State)
	writeUntil(&b, rh.Until, rh.Reason)
	for _, m := range rh.Models {
		fmt.Fprintf(&b, "; %s", m)
	}
	return b.String()
}

// String shows the model's state in a few words, without a time that is not set.
func (m ModelHealth) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", m.Model, m.State)
	writeUntil(&b, m.Until, m.Reason)
	return b.String()
}

// writeUntil writes " until T (reason)", leaving out what is not set.
func writeUntil(b *strings.Builder, until time.Time, reason string) {
	if !until.IsZero() {
		b.WriteString(" until " + until.UTC().Format(timeFormat))
	}
	if reason != "" {
		b.WriteString(" (" + reason + ")")
	}
}

func (h *health) snapshot(now time.Time) RegionHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	rh := RegionHealth{State: h.region.state(now), Latency: h.latency}
	if rh.State != StateServing {
		rh.Reason = h.region.reason()
		if rh.State == StateResting {
			rh.Until = h.region.until
		}
	}
	for model, r := range h.models {
		s := r.state(now)
		if s == StateServing || (r.kind == restMissing && s != StateMissing) {
			continue
		}
		mh := ModelHealth{Model: model, State: s, Reason: r.reason()}
		if s == StateResting || s == StateMissing {
			mh.Until = r.until
		}
		rh.Models = append(rh.Models, mh)
	}
	slices.SortFunc(rh.Models, func(a, b ModelHealth) int { return cmp.Compare(a.Model, b.Model) })
	return rh
}
