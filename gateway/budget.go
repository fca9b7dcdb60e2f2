package gateway

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aoai-failover/failover"
)

// Defaults of the limits that keep a gateway within its memory, sized for a container of 512 MiB (see
// docs/gateway.md, "Limits under load").
const (
	// DefaultMaxInFlight bounds the requests being proxied at once. Each costs the gateway and the client a few
	// goroutines and buffers (tens of KiB) besides its body and answer; 1024 calls of 1 to 60 s each serve
	// thousands of requests a minute, more than most deployments' quotas allow.
	DefaultMaxInFlight = 1024
	// DefaultMaxHeldBytes bounds the bytes held for request bodies and buffered answers, for a container of
	// 512 MiB: half of a Go memory limit (GOMEMLIMIT) of 384 MiB, which leaves room below the container's limit
	// for what the budget does not count (connections, streams, the runtime). Under
	// abuse at this budget and that memory limit, the gateway's peak RSS measured 316–318 MiB (BENCHMARKS.md).
	DefaultMaxHeldBytes = 192 << 20
	// DefaultMaxConnections bounds the connections Gateway.Listener keeps open: an idle one costs about 10 KiB
	// (a goroutine and its buffers; more with TLS).
	DefaultMaxConnections = 4096
)

// memoryLimitShare is the share of GOMEMLIMIT that the held bytes may take by default when GOMEMLIMIT is set
// (and smaller than twice DefaultMaxHeldBytes): half. The garbage collector needs the other half: it lets the
// heap grow past what is live before it collects, up to twice with GOGC=100, or up to the memory limit.
const memoryLimitShare = 2

// shedRetryAfter is the Retry-After of an answer shed at a limit: the gateway is full now, and requests in flight
// end every second or so.
const shedRetryAfter = time.Second

// defaultHeldBytes is MaxHeldBytes's default: DefaultMaxHeldBytes, or half the Go runtime's soft memory limit
// (GOMEMLIMIT, or debug.SetMemoryLimit) when that is smaller, but never less than largestBody, so that a body
// the gateway accepts fits.
func defaultHeldBytes(largestBody int64) int64 {
	held := int64(DefaultMaxHeldBytes)
	// SetMemoryLimit with a negative value reads the limit without changing it; math.MaxInt64 means none.
	if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64 {
		held = min(held, limit/memoryLimitShare)
	}
	return max(held, largestBody)
}

// limitDefaults sets the zero limits of cfg, whose body limits are set, to their defaults, and checks that a body
// the body limits accept fits in MaxHeldBytes.
func limitDefaults(cfg *Config) error {
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	largest := max(cfg.MaxBodyBytes, cfg.MaxUploadBytes) + 1 // a body reserves a byte past its length
	if cfg.MaxHeldBytes == 0 {
		cfg.MaxHeldBytes = defaultHeldBytes(largest)
	}
	if cfg.MaxHeldBytes < largest {
		return fmt.Errorf("gateway: MaxHeldBytes is %d, expected more than MaxBodyBytes and MaxUploadBytes (%d): a body they accept must fit",
			cfg.MaxHeldBytes, largest-1)
	}
	return nil
}

// budget counts what the gateway holds against its limits: requests in flight and bytes held for bodies and
// answers. Both are atomic counters, checked without waiting: past a limit the request is shed at once.
type budget struct {
	maxInFlight int64
	maxHeld     int64
	inFlight    atomic.Int64
	held        atomic.Int64
}

// enter admits one more request in flight, or reports false when MaxInFlight are.
func (b *budget) enter() bool {
	if b.inFlight.Add(1) > b.maxInFlight {
		b.inFlight.Add(-1)
		return false
	}
	return true
}

func (b *budget) leave() { b.inFlight.Add(-1) }

// reserve takes n bytes from the budget, or takes none and reports false when they would exceed it.
func (b *budget) reserve(n int64) bool {
	for {
		held := b.held.Load()
		if held+n > b.maxHeld {
			return false
		}
		if b.held.CompareAndSwap(held, held+n) {
			return true
		}
	}
}

func (b *budget) free(n int64) { b.held.Add(-n) }

// shedReason is the limit a shed request met: a label of aoai_gateway_shed_total.
type shedReason int

const (
	shedInFlight shedReason = iota
	shedHeldBytes
	shedReasons // how many there are
)

var shedReasonNames = [shedReasons]string{"in_flight", "held_bytes"}

func (s shedReason) String() string { return shedReasonNames[s] }

// shed answers a request the gateway has no room for: 503 with Retry-After, in the error shape of the other
// answers, with code gateway_overloaded and x-should-retry: true (unlike the failover answers: nothing went
// upstream, and the SDKs' own retry after Retry-After is what a caller should do). 429 is left to throttled
// regions. It is counted in aoai_gateway_shed_total and logged at Debug.
func (g *Gateway) shed(w http.ResponseWriter, r *http.Request, why shedReason) int {
	g.metrics.shed[why].Add(1)
	if g.cfg.Logger != nil { // at Debug, as refusals: a flood of them must not flood the logs
		g.cfg.Logger.LogAttrs(r.Context(), slog.LevelDebug, "aoai-gateway shed", slog.String("method", clip(r.Method)),
			slog.String("path", clip(r.URL.Path)), slog.String("reason", why.String()))
	}
	if why == shedInFlight {
		closeIfUnread(w, r) // its body is not read: see closeIfUnread
	}
	message := "the gateway is at its limit of " + strconv.FormatInt(g.budget.maxInFlight, 10) + " requests in flight; retry after a second"
	if why == shedHeldBytes {
		message = "the gateway holds its limit of " + strconv.FormatInt(g.budget.maxHeld, 10) +
			" bytes of request bodies and answers; retry after a second"
	}
	a := failover.ErrorAnswer{Status: http.StatusServiceUnavailable, Code: "gateway_overloaded", Message: message}
	data := a.Body()
	h := w.Header()
	h.Set("Retry-After", strconv.Itoa(int(shedRetryAfter/time.Second)))
	h.Set("Retry-After-Ms", strconv.FormatInt(shedRetryAfter.Milliseconds(), 10))
	h.Set("X-Should-Retry", "true")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(a.Status)
	_, _ = w.Write(data)
	return a.Status
}

// answerHold is what one request's answers hold of the budget while the client reads them (see
// failover.WithAnswerBudget): attempts may run at once (hedging), so it is counted atomically, and it is all given
// back when the request ends.
type answerHold struct {
	held     atomic.Int64
	refused  atomic.Bool // the budget had no room for an answer
	tooLarge atomic.Bool // nor would it ever: the answer is larger than the whole budget
}

// room is the client's budget for the request's answers: each is granted, or refused when the gateway is full.
func (h *answerHold) room(b *budget) func(int64) bool {
	return func(n int64) bool {
		if !b.reserve(n) {
			h.tooLarge.Store(h.held.Load()+n > b.maxHeld)
			h.refused.Store(true)
			return false
		}
		h.held.Add(n)
		return true
	}
}

// shedAnswer answers a request whose answer the gateway had no room to hold. The region made (and billed) the
// answer: retrying later is worth it only when the answer could ever fit, else the request fails for good with
// 502 answer_too_large and x-should-retry: false, as a retry would be billed again and fail again.
func (g *Gateway) shedAnswer(w http.ResponseWriter, r *http.Request, tooLarge bool) int {
	if !tooLarge {
		return g.shed(w, r, shedHeldBytes)
	}
	g.metrics.shed[shedHeldBytes].Add(1)
	return writeAnswer(w, failover.ErrorAnswer{Status: http.StatusBadGateway, Code: "answer_too_large",
		Message: "the region's answer is larger than the " + strconv.FormatInt(g.budget.maxHeld, 10) +
			" bytes the gateway may hold (-max-held-bytes)"})
}

// free gives back what the request's answers held.
func (h *answerHold) free(b *budget) { b.free(h.held.Load()) }
