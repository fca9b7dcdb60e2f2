package failover

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// Some objects live in the one region that made them: a stored response and its items (the Responses API stores
// by default), a file, a batch. A request that names one must go where it is: another region answers "not found".
// owners remembers, for each such id the Client saw made, which backend made it.

const (
	// maxOwners bounds the ids remembered: beyond it the oldest are forgotten (an id that is not known is sought
	// on the regions in order, so forgetting costs round trips, not answers).
	maxOwners = 100_000
	// ownerTTL is how long an id is remembered: Azure keeps stored responses for 30 days.
	ownerTTL = 30 * 24 * time.Hour
)

// owners maps the ids of stored objects to the backend that holds them, with a bound and an expiry, and shares
// them through the Store when it implements OwnerStore.
type owners struct {
	mu      sync.Mutex
	byID    map[string]owner
	learned []learnedID // in the order they were learned, for eviction
	head    int         // learned[head:] are still to evict
	seq     uint64

	sharing *sharing   // nil without a Store
	store   OwnerStore // nil when the Store does not share owners
}

type owner struct {
	b     *backend
	until time.Time
	seq   uint64 // which learning of the id this is
}

type learnedID struct {
	id  string
	seq uint64
}

func newOwners(share *sharing) *owners {
	o := &owners{byID: make(map[string]owner), sharing: share}
	if share != nil {
		o.store, _ = share.store.(OwnerStore)
	}
	return o
}

// learn records that b holds the objects ids, here and, in one call, in the Store.
func (o *owners) learn(ctx context.Context, b *backend, ids ...string) {
	ids = slices.DeleteFunc(ids, func(id string) bool { return id == "" })
	if len(ids) == 0 {
		return
	}
	now := time.Now()
	o.mu.Lock()
	for _, id := range ids {
		o.seq++
		o.byID[id] = owner{b: b, until: now.Add(ownerTTL), seq: o.seq}
		o.learned = append(o.learned, learnedID{id, o.seq})
	}
	o.evictLocked()
	o.mu.Unlock()
	o.share(ctx, ids, b.id, ownerTTL, now)
}

// forget records that the object id is gone (deleted), here and in the Store.
func (o *owners) forget(ctx context.Context, id string) {
	o.mu.Lock()
	delete(o.byID, id) // its entry in learned evicts nothing now
	o.mu.Unlock()
	o.share(ctx, []string{id}, "", 0, time.Now())
}

// share saves ids' owner in the Store, when it shares owners.
func (o *owners) share(ctx context.Context, ids []string, backend string, ttl time.Duration, now time.Time) {
	if o.store == nil || !o.sharing.available(now) {
		return
	}
	cctx, cancel, _ := o.sharing.context(ctx, false)
	err := o.store.SaveOwners(cctx, ids, backend, ttl, now)
	cancel()
	o.sharing.settle(ctx, err)
}

// evictLocked forgets the oldest ids past maxOwners; the caller holds o.mu.
func (o *owners) evictLocked() {
	for len(o.byID) > maxOwners && o.head < len(o.learned) {
		l := o.learned[o.head]
		o.learned[o.head] = learnedID{}
		o.head++
		if o.byID[l.id].seq == l.seq { // else learned again since, and a later entry stands for it
			delete(o.byID, l.id)
		}
	}
	if len(o.learned)-o.head > 2*maxOwners || o.head > 1024 && o.head > len(o.learned)/2 {
		// Ids learned again and again would grow the list without evicting anything: keep the live entries.
		live := o.learned[:0]
		for _, l := range o.learned[o.head:] {
			if o.byID[l.id].seq == l.seq {
				live = append(live, l)
			}
		}
		clear(o.learned[len(live):])
		o.learned, o.head = live, 0
	}
}

// find returns the backend that holds id, or nil when neither this Client nor, when remote is set, the Store
// knows.
func (o *owners) find(ctx context.Context, id string, remote bool) *backend {
	now := time.Now()
	o.mu.Lock()
	w, ok := o.byID[id]
	o.mu.Unlock()
	if ok && now.Before(w.until) {
		return w.b
	}
	if !remote || o.store == nil || !o.sharing.available(now) {
		return nil
	}
	cctx, cancel, _ := o.sharing.context(ctx, true)
	name, err := o.store.LoadOwner(cctx, id, now)
	cancel()
	if !o.sharing.settle(ctx, err) || name == "" {
		return nil
	}
	return o.sharing.byID[name] // nil for a backend this Client does not have
}

// storedIDs are the ids an answer that made stored objects names: a response's id and its output items', a
// file's or a batch's id.
func storedIDs(data []byte) []string {
	var answer struct {
		ID     string `json:"id"`
		Output []struct {
			ID string `json:"id"`
		} `json:"output"`
	}
	if json.Unmarshal(data, &answer) != nil || answer.ID == "" {
		return nil
	}
	ids := []string{answer.ID}
	for _, item := range answer.Output {
		ids = append(ids, item.ID)
	}
	return ids
}
