package storetest

import (
	"container/heap"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/aoai-failover/failover"
)

// ErrDown is what a Memory store answers while SetDown(true) is in force.
var ErrDown = errors.New("storetest: store is down")

// ErrClosed is what a Memory store answers once closed.
var ErrClosed = errors.New("storetest: store is closed")

// MaxOwners bounds the owners a Memory store keeps (see Memory.SaveOwners): past it, a save first forgets the
// owner that ends soonest, the oldest saved of those that end together.
const MaxOwners = 100_000

// Memory is a failover.Store in memory, and a failover.OwnerStore. Its zero value is empty and ready; it is safe
// for concurrent use. SetDown makes it fail every call, as a store that is out would.
type Memory struct {
	mu        sync.Mutex
	records   map[scope]failover.Record
	probes    map[scope]probe
	owners    ownerHeap // by end, then by save
	ownerByID map[string]*owner
	maxOwners int // MaxOwners when 0; tests set fewer
	saves     uint64
	down      bool
	closed    bool
	calls     int
}

type scope struct{ backend, model string }

type probe struct {
	owner string
	until time.Time
}

var (
	_ failover.Store = (*Memory)(nil)
	// Close and the OwnerStore methods are optional interfaces a failover.Store may implement (see
	// failover.Store).
	_ io.Closer           = (*Memory)(nil)
	_ failover.OwnerStore = (*Memory)(nil)
)

// Close makes every later call fail with ErrClosed, as a closed connection's would; Client.Close calls it on a
// store the client opened (failover.WithStoreOpener). The records stay, for Records.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

// SetDown makes every later call fail with ErrDown (true) or work again (false). The records stay.
func (m *Memory) SetDown(down bool) {
	m.mu.Lock()
	m.down = down
	m.mu.Unlock()
}

// Calls is the number of calls the store has answered, failed ones included.
func (m *Memory) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// enter counts a call and reports whether the store is down; m.mu is held after it.
func (m *Memory) enter(ctx context.Context) error {
	m.mu.Lock()
	m.calls++
	if m.closed {
		return ErrClosed
	}
	if m.down {
		return ErrDown
	}
	if m.records == nil {
		m.records, m.probes = make(map[scope]failover.Record), make(map[scope]probe)
	}
	if m.ownerByID == nil {
		m.ownerByID = make(map[string]*owner)
	}
	return ctx.Err()
}

// Load implements failover.Store.
func (m *Memory) Load(ctx context.Context, backends []string, now time.Time) ([]failover.Record, error) {
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return nil, err
	}
	var out []failover.Record
	for _, b := range backends {
		for k, r := range m.records {
			if k.backend == b && r.Until.After(now) {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// Save implements failover.Store.
func (m *Memory) Save(ctx context.Context, r failover.Record, now time.Time) error {
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return err
	}
	for k, cur := range m.records { // forget what has ended, as Redis would
		if !cur.Until.After(now) {
			delete(m.records, k)
		}
	}
	for k, p := range m.probes {
		if !p.until.After(now) {
			delete(m.probes, k)
		}
	}
	k := scope{r.Backend, r.Model}
	if cur, ok := m.records[k]; ok && cur.Kind != failover.RestRecovered &&
		(r.Kind == failover.RestRecovered || cur.Until.After(r.Until)) {
		return nil // a rest stands against a shorter one, and against news of a recovery
	}
	m.records[k] = r
	return nil
}

// Claim implements failover.Store.
func (m *Memory) Claim(ctx context.Context, backend string, models []string, owner string, ttl time.Duration, now time.Time) (bool, []failover.Record, error) {
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return false, nil, err
	}
	var inForce []failover.Record
	for _, model := range models {
		if r, ok := m.records[scope{backend, model}]; ok && r.Until.After(now) {
			inForce = append(inForce, r)
		}
	}
	if len(inForce) > 0 {
		return false, inForce, nil
	}
	for _, model := range models {
		if p, ok := m.probes[scope{backend, model}]; ok && p.owner != owner && p.until.After(now) {
			return false, nil, nil
		}
	}
	for _, model := range models {
		m.probes[scope{backend, model}] = probe{owner: owner, until: now.Add(ttl)}
	}
	return true, nil, nil
}

// Release implements failover.Store.
func (m *Memory) Release(ctx context.Context, backend string, models []string, owner string) error {
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return err
	}
	for _, model := range models {
		k := scope{backend, model}
		if p, ok := m.probes[k]; ok && p.owner == owner {
			delete(m.probes, k)
		}
	}
	return nil
}

// Records returns every record the store holds, ended ones included, for tests to inspect.
func (m *Memory) Records() []failover.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]failover.Record, 0, len(m.records))
	for _, r := range m.records {
		out = append(out, r)
	}
	return out
}

// owner is the backend that holds one object, until an end on the Client's clock.
type owner struct {
	id, backend string
	until       time.Time
	save        uint64 // order of the save, which breaks ties of until
	index       int    // in Memory.owners
}

// ownerHeap orders owners by end, then by save: its first is the one to forget first.
type ownerHeap []*owner

func (h ownerHeap) Len() int { return len(h) }

func (h ownerHeap) Less(i, j int) bool {
	if !h[i].until.Equal(h[j].until) {
		return h[i].until.Before(h[j].until)
	}
	return h[i].save < h[j].save
}

func (h ownerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *ownerHeap) Push(x any) {
	o := x.(*owner)
	o.index = len(*h)
	*h = append(*h, o)
}

func (h *ownerHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return o
}

// SaveOwners implements failover.OwnerStore: backend holds each of ids until now+ttl, replacing what was saved
// for it; a ttl that is not positive leaves nothing in force for them. It forgets the owners that have ended at
// now, and keeps at most MaxOwners: past that it forgets the owner that ends soonest (the oldest saved among
// equals), as a Redis with an eviction policy of volatile-ttl would.
func (m *Memory) SaveOwners(ctx context.Context, ids []string, backend string, ttl time.Duration, now time.Time) error {
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return err
	}
	for len(m.owners) > 0 && !m.owners[0].until.After(now) { // forget what has ended, as Redis would
		delete(m.ownerByID, heap.Pop(&m.owners).(*owner).id)
	}
	for _, id := range ids {
		m.saveOwner(id, backend, ttl, now)
	}
	return nil
}

// saveOwner saves one owner; the caller holds m.mu.
func (m *Memory) saveOwner(id, backend string, ttl time.Duration, now time.Time) {
	if o, ok := m.ownerByID[id]; ok {
		heap.Remove(&m.owners, o.index)
		delete(m.ownerByID, id)
	}
	if ttl <= 0 {
		return
	}
	limit := m.maxOwners
	if limit <= 0 {
		limit = MaxOwners
	}
	for len(m.owners) >= limit {
		delete(m.ownerByID, heap.Pop(&m.owners).(*owner).id)
	}
	m.saves++
	o := &owner{id: id, backend: backend, until: now.Add(ttl), save: m.saves}
	heap.Push(&m.owners, o)
	m.ownerByID[id] = o
}

// LoadOwner implements failover.OwnerStore: the backend saved for id, if it holds id after now; "" otherwise.
func (m *Memory) LoadOwner(ctx context.Context, id string, now time.Time) (string, error) {
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return "", err
	}
	if o, ok := m.ownerByID[id]; ok && o.until.After(now) {
		return o.backend, nil
	}
	return "", nil
}
