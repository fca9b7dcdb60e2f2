package failover

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"sync"
	"time"
)

// sharing keeps a client's backends in step with its Store. Every call has a short deadline; a call that fails
// makes the client go on alone until StoreTiming.Retry has passed (logged once), and the next call that works
// resumes sharing (logged too). Like health, it computes everything from timestamps: no goroutines, no timers.
type sharing struct {
	store    Store
	closer   io.Closer // the store, when the client opened it; nil when the caller owns it
	owner    string    // this client as a prober: random, so that no two clients share it
	timing   StoreTiming
	probeTTL time.Duration // how long a claimed probe holds if its client never ends it: it crashed
	logger   *slog.Logger
	ids      []string // the backends' ids, for Load
	byID     map[string]*backend

	mu        sync.Mutex
	loadedAt  time.Time // when the last load that worked started; zero after one that failed
	loading   bool      // a load is in flight: other requests go on with the copy they have
	down      bool      // the last call failed
	downUntil time.Time // no call is made before then
	closed    bool      // Client.Close was called: no call is made again
}

func newSharing(store Store, closer io.Closer, t StoreTiming, attemptTimeout time.Duration, logger *slog.Logger, backends []*backend) *sharing {
	if t.Refresh == 0 {
		t.Refresh = DefaultStoreRefresh
	}
	if t.Timeout == 0 {
		t.Timeout = DefaultStoreTimeout
	}
	if t.Retry == 0 {
		t.Retry = DefaultStoreRetry
	}
	s := &sharing{store: store, closer: closer, owner: rand.Text(), timing: t, logger: logger,
		probeTTL: attemptTimeout + time.Second, byID: make(map[string]*backend, len(backends))}
	for _, b := range backends {
		s.ids = append(s.ids, b.id)
		s.byID[b.id] = b
	}
	return s
}

// backendID names a backend in a Store: its name, for people reading the store, and a digest of its endpoint,
// so that two programs that give one name to different resources do not share their rests. No key is part of it.
func backendID(name, endpoint string) string {
	sum := sha256.Sum256([]byte(endpoint))
	return name + "@" + hex.EncodeToString(sum[:8])
}

// context bounds one store call by Timeout and, when the request still has attempts to make, by half of what is
// left of its deadline, so that a slow store never leaves a request no time for a region; cut reports that the
// latter is shorter, and a call that fails then says nothing of the store. The request's cancellation does not
// reach the call: what a failed attempt taught, and a probe's claim or end, are worth recording after the caller
// has left.
func (s *sharing) context(ctx context.Context, waiting bool) (_ context.Context, _ context.CancelFunc, cut bool) {
	d := s.timing.Timeout
	if deadline, ok := ctx.Deadline(); ok && waiting {
		if left := time.Until(deadline) / 2; left < d {
			d, cut = max(left, 0), true
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	return cctx, cancel, cut
}

// available reports whether a store call may be made at now.
func (s *sharing) available(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && !now.Before(s.downUntil)
}

// close ends sharing, and closes the store if the client opened it; only the first call does.
func (s *sharing) close() error {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if closed || s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// settle records how a store call went and logs a change between working and not, outside the lock.
func (s *sharing) settle(ctx context.Context, err error) bool {
	s.mu.Lock()
	was := s.down
	s.down = err != nil
	if err != nil {
		s.downUntil = time.Now().Add(s.timing.Retry)
	}
	s.mu.Unlock()
	switch {
	case s.logger == nil || was == (err != nil):
	case err != nil:
		s.logger.LogAttrs(ctx, slog.LevelWarn, "failover: store unreachable; going on with this client's own state",
			slog.String("error", describeCause(err)), slog.Duration("retry", s.timing.Retry))
	default:
		s.logger.LogAttrs(ctx, slog.LevelInfo, "failover: store reachable again; sharing resumes")
	}
	return err == nil
}

// sync loads the store's records into the backends' health when the copy is older than StoreTiming.Refresh.
// Only one request at a time loads; the others go on with what the client knows. Unlike the other calls, the
// load ends with the request: it is only of use to it.
func (s *sharing) sync(ctx context.Context) {
	now := time.Now()
	s.mu.Lock()
	fresh := s.timing.Refresh > 0 && !s.loadedAt.IsZero() && now.Sub(s.loadedAt) < s.timing.Refresh
	if s.loading || fresh || s.closed || now.Before(s.downUntil) {
		s.mu.Unlock()
		return
	}
	s.loading = true
	s.mu.Unlock()

	cctx, cancel, cut := s.context(ctx, true)
	stop := context.AfterFunc(ctx, cancel) // unlike the other calls, the load is of use to this request alone
	records, err := s.store.Load(cctx, s.ids, now)
	stop()
	cancel()
	s.mu.Lock()
	s.loading = false
	if err == nil {
		s.loadedAt = now
	}
	s.mu.Unlock()
	if err != nil && (cut || ctx.Err() != nil) {
		return // the request's own deadline or departure: no verdict on the store
	}
	if !s.settle(ctx, err) {
		return
	}
	for _, r := range records {
		if b := s.byID[r.Backend]; b != nil {
			s.learn(b, r, now)
		}
	}
}

// learn gives b's health a record, unless it is about a deployment other than the one this client sends the
// model to: a model missing from, or throttled on, another replica's deployment says nothing of this one's.
func (s *sharing) learn(b *backend, r Record, now time.Time) {
	if r.Model != "" && r.Deployment != "" && r.Deployment != b.deployment(r.Model) {
		return
	}
	b.health.learn(r, now)
}

// claim makes t, which admit made a probe of a shared rest, the probe of the whole fleet, and returns the ticket
// to go with. When another client probes, or the store holds a newer rest, t's probes are released and claim
// returns false with when to look again. When the store says another client's probe was served, the attempt
// goes as a plain one. When the store cannot be asked, t stays a probe of this client alone.
func (s *sharing) claim(ctx context.Context, b *backend, model string, t ticket) (ticket, time.Time, bool) {
	now := time.Now()
	if !s.available(now) {
		return t, time.Time{}, true
	}
	cctx, cancel, cut := s.context(ctx, true)
	ok, records, err := s.store.Claim(cctx, b.id, t.scopes(model), s.owner, s.probeTTL, now)
	cancel()
	if err != nil {
		// The claim may have landed all the same, its answer lost: end it with the attempt, as if it had.
		t.claimed = true
		if !cut {
			s.settle(ctx, err)
		}
		return t, time.Time{}, true
	}
	s.settle(ctx, nil)
	if ok {
		t.claimed = true
		return t, time.Time{}, true
	}
	back, recovered := now.Add(probePoll), false
	for _, r := range records {
		s.learn(b, r, now)
		if r.Kind == RestRecovered {
			recovered = true
		} else {
			back = later(back, r.Until)
		}
	}
	if recovered && len(records) == 1 {
		b.health.release(t)
		if plain, _, ok := b.health.admit(model, now); ok {
			if !plain.probes() {
				return plain, time.Time{}, true
			}
			b.health.release(plain) // half-open still, for the scope that did not recover
		}
		return ticket{}, now.Add(probePoll), false
	}
	b.health.heldElsewhere(t, back)
	return ticket{}, back, false
}

// probes reports whether t is a probe.
func (t ticket) probes() bool { return t.regionProbe != nil || t.modelProbe != nil }

// recovered tells the other clients that t, a probe claimed in the store, was served, so that they go back to
// the backend without probing it one after another; then it ends t's probes.
func (s *sharing) recovered(ctx context.Context, b *backend, model string, t ticket) {
	if !t.claimed {
		return
	}
	now := time.Now()
	// Long enough for every client to load it: each loads at least once a Refresh while requests come.
	until := now.Add(2 * max(s.timing.Refresh, time.Second))
	for _, scope := range t.scopes(model) {
		if !s.available(now) {
			break
		}
		rec := Record{Backend: b.id, Model: scope, Kind: RestRecovered, Since: t.start, Until: until}
		if scope != "" {
			rec.Deployment = b.deployment(scope)
		}
		cctx, cancel, _ := s.context(ctx, false)
		err := s.store.Save(cctx, rec, now)
		cancel()
		s.settle(ctx, err)
	}
	s.release(ctx, b, model, t)
}

// save shares a rest that an attempt set, then ends the attempt's probes. Rests that depend on the client's own
// credentials stay with it.
func (s *sharing) save(ctx context.Context, b *backend, model string, r rest, t ticket) {
	if kind, ok := r.kind.shared(); ok && s.available(r.since) {
		rec := Record{Backend: b.id, Kind: kind, Status: r.status, Failures: r.failures, Since: r.since, Until: r.until}
		if !r.kind.wholeRegion() {
			rec.Model, rec.Deployment = model, b.deployment(model)
		}
		cctx, cancel, cut := s.context(ctx, true)
		err := s.store.Save(cctx, rec, r.since)
		cancel()
		if err == nil || !cut {
			s.settle(ctx, err)
		}
	}
	s.release(ctx, b, model, t)
}

// release ends the probes t claimed in the store. It is sent even while the client goes on alone after a failed
// call: a claim left standing would keep every other client from probing until it lapses.
func (s *sharing) release(ctx context.Context, b *backend, model string, t ticket) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if !t.claimed || closed {
		return // unclaimed, or lapsing by themselves
	}
	cctx, cancel, _ := s.context(ctx, false)
	err := s.store.Release(cctx, b.id, t.scopes(model), s.owner)
	cancel()
	s.settle(ctx, err)
}

// scopes are the models whose probes t is, of the rests a Store shares: "" for the whole backend. A probe after a
// rest that is not shared (a refused key) is this client's alone, and claims nothing.
func (t ticket) scopes(model string) []string {
	var out []string
	if _, shared := t.regionProbe.shared(); shared {
		out = append(out, "")
	}
	if _, shared := t.modelProbe.shared(); shared {
		out = append(out, model)
	}
	return out
}
