package failover

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// DefaultBackoff is the rest after a failure that came without a usable Retry-After, when WithBackoff is not
// given: 1 s after the first consecutive failure, doubling with each further one up to MaxDefaultBackoff (8 s),
// each varied by up to ±20% so that many clients do not come back at the same instant. The cap is low on purpose:
// a rest ends with one probe request, so a region still down costs one request per rest, while a region that
// has recovered is back in service within seconds rather than after a rest that doubled through the outage.
func DefaultBackoff(failures int) time.Duration {
	d := MaxDefaultBackoff
	if failures >= 1 && failures <= 3 { // 1, 2, 4 s; then the cap
		d = time.Second << (failures - 1)
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// MaxDefaultBackoff is the longest rest DefaultBackoff gives, before its jitter (so at most 9.6 s).
const MaxDefaultBackoff = 8 * time.Second

// restPolicy sizes rests; see the options that set each field.
type restPolicy struct {
	backoff func(failures int) time.Duration
	fault   time.Duration // WithFaultRest
	missing time.Duration // WithMissingModelRest
}

// rest is one rest of a backend, or of one model on it.
type rest struct {
	kind     restKind
	status   int       // the answer's status, 0 when there was none
	since    time.Time // when it was set: an attempt that started earlier cannot clear it
	until    time.Time
	failures int  // consecutive failures, which lengthen the backoff
	probing  bool // the rest is over and a probe is in flight
	// heldUntil: another client sharing the Store probes; this one passes the backend over until then.
	heldUntil time.Time
}

// shared returns the Record.Kind of the rest, and whether a Store shares it; false for no rest.
func (r *rest) shared() (string, bool) {
	if r == nil {
		return "", false
	}
	return r.kind.shared()
}

// reason says in a few words why the backend rests.
func (r *rest) reason() string {
	switch r.kind {
	case restThrottled:
		return "429 rate limited"
	case restMissing:
		return fmt.Sprintf("%d: model not deployed here", r.status)
	case restUnreachable:
		return "no answer"
	case restNoToken:
		return "no Entra ID token"
	case restFault:
		if r.status == 0 {
			return "no Entra ID token: the credential cannot work here"
		}
		if r.status == http.StatusTooManyRequests {
			return "429 insufficient_quota: the account is out of credit"
		}
		return fmt.Sprintf("%d: credentials rejected", r.status)
	}
	if r.status == 0 {
		return "attempt timed out"
	}
	if r.status >= 200 && r.status < 300 {
		return fmt.Sprintf("%d but the answer broke off or was malformed", r.status)
	}
	return fmt.Sprintf("%d %s", r.status, http.StatusText(r.status))
}

// state is the rest's state at now.
func (r *rest) state(now time.Time) State {
	switch {
	case r == nil:
		return StateServing
	case r.kind == restMissing && now.Before(r.until):
		return StateMissing
	case now.Before(r.until):
		return StateResting
	case r.kind.probes() && (r.probing || now.Before(r.heldUntil)):
		return StateProbing
	case r.kind.probes():
		return StateHalfOpen
	}
	return StateServing
}
