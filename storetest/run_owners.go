package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
)

// The checks of the optional failover.OwnerStore, which Run runs for a store that implements it.

// ownerStore is a Store that shares owners, as the owner checks need one.
type ownerStore interface {
	failover.Store
	failover.OwnerStore
}

// openOwners opens a store and skips the test when it does not implement failover.OwnerStore, which is optional.
func openOwners(t *testing.T, open func(t *testing.T) failover.Store) ownerStore {
	t.Helper()
	s, ok := open(t).(ownerStore)
	if !ok {
		t.Skip("the store does not implement failover.OwnerStore")
	}
	return s
}

// checkOwnerSaveThenLoad checks that LoadOwner returns the backend SaveOwners wrote for the same id, for each of
// several ids and backends, and that loading does not consume it: every replica asks about the object it holds.
func checkOwnerSaveThenLoad(t *testing.T, s ownerStore) {
	now := contractNow
	saveOwner(t, s, "resp_1", "east@1", time.Hour, now)
	saveOwner(t, s, "file-2", "west@2", time.Hour, now)
	saveOwner(t, s, "batch_3", "east@1", time.Minute, now)
	for range 2 {
		assertOwner(t, s, "resp_1", now, "east@1")
		assertOwner(t, s, "file-2", now.Add(time.Minute), "west@2")
		assertOwner(t, s, "batch_3", now.Add(59*time.Second), "east@1")
	}
}

// checkOwnerManyAtOnce checks that one SaveOwners call saves every id it names (a response and its output items
// come together), and that one with no ttl removes every id it names, and no other.
func checkOwnerManyAtOnce(t *testing.T, s ownerStore) {
	now := contractNow
	ids := []string{"resp_1", "msg_1", "rs_1", "fc_1"}
	if err := s.SaveOwners(context.Background(), ids, "east@1", time.Hour, now); err != nil {
		t.Fatalf("SaveOwners(%q): %v", ids, err)
	}
	for _, id := range ids {
		assertOwner(t, s, id, now, "east@1")
	}
	if err := s.SaveOwners(context.Background(), ids[:2], "", 0, now); err != nil {
		t.Fatalf("SaveOwners(%q, ttl 0): %v", ids[:2], err)
	}
	assertOwner(t, s, "resp_1", now, "")
	assertOwner(t, s, "msg_1", now, "")
	assertOwner(t, s, "rs_1", now, "east@1")
	if err := s.SaveOwners(context.Background(), nil, "east@1", time.Hour, now); err != nil {
		t.Fatalf("SaveOwners(no ids): %v", err)
	}
}

// checkOwnerReplaced checks that SaveOwners replaces what was saved for the id, its backend and its end alike, a
// shorter life included; and that a save whose ttl is not positive leaves nothing in force.
func checkOwnerReplaced(t *testing.T, s ownerStore) {
	now := contractNow
	saveOwner(t, s, "resp_1", "east@1", time.Hour, now)
	saveOwner(t, s, "resp_1", "west@2", time.Minute, now.Add(time.Second))
	assertOwner(t, s, "resp_1", now.Add(time.Second), "west@2")
	assertOwner(t, s, "resp_1", now.Add(time.Second+time.Minute), "") // the hour of the first save is replaced too
	saveOwner(t, s, "resp_1", "north@3", time.Minute, now.Add(2*time.Minute))
	assertOwner(t, s, "resp_1", now.Add(2*time.Minute), "north@3")
	saveOwner(t, s, "resp_1", "north@3", 0, now.Add(2*time.Minute))
	assertOwner(t, s, "resp_1", now.Add(2*time.Minute), "")
}

// checkOwnerEndsByNow checks that an owner is in force until now+ttl, to the nanosecond, by the now the Client
// gives (contractNow is far from the store's own clock) and not after: a replica would otherwise send requests
// about an object that is gone to where it was.
func checkOwnerEndsByNow(t *testing.T, s ownerStore) {
	now := contractNow
	saveOwner(t, s, "resp_1", "east@1", 10*time.Second, now)
	saveOwner(t, s, "resp_2", "west@2", 30*24*time.Hour, now)
	assertOwner(t, s, "resp_1", now, "east@1")
	assertOwner(t, s, "resp_1", now.Add(10*time.Second-time.Nanosecond), "east@1")
	assertOwner(t, s, "resp_1", now.Add(10*time.Second), "")
	assertOwner(t, s, "resp_1", now.Add(time.Hour), "")
	assertOwner(t, s, "resp_2", now.Add(29*24*time.Hour), "west@2")
	assertOwner(t, s, "resp_2", now.Add(30*24*time.Hour), "")
	// An ended owner is forgotten for good: a later save of another id does not bring it back.
	saveOwner(t, s, "resp_3", "east@1", time.Minute, now.Add(time.Hour))
	assertOwner(t, s, "resp_1", now.Add(time.Hour), "")
}

// checkOwnerUnknownID checks that an id never saved, in an empty store and in one that holds others, loads as ""
// with no error, and that a backend's records do not answer for an id named like the backend.
func checkOwnerUnknownID(t *testing.T, s ownerStore) {
	now := contractNow
	assertOwner(t, s, "resp_1", now, "")
	assertOwner(t, s, "", now, "")
	save(t, s, rec("east@1", "m", failover.RestThrottled, 0, time.Minute), now)
	saveOwner(t, s, "resp_1", "east@1", time.Minute, now)
	for _, id := range []string{"resp_2", "resp_", "resp_10", "RESP_1", "east@1", "m"} {
		assertOwner(t, s, id, now, "")
	}
}

// checkOwnerIDsDoNotCollide checks that ids with characters a store may use in its keys, or named like backends
// and models, stay apart from each other and from the backends' records and probes: ids come from the API and
// from callers, and a store may build keys from them.
func checkOwnerIDsDoNotCollide(t *testing.T, s ownerStore) {
	now := contractNow
	backends := []string{"east@1", "owner:x@0123456789abcdef", "x@0123456789abcdef", "rest:m", "{east@1}"}
	var recs []failover.Record
	for i, b := range backends {
		r := rec(b, "m", failover.RestFailing, 0, time.Duration(i+1)*time.Minute)
		save(t, s, r, now)
		recs = append(recs, r)
	}
	ids := []string{"", " ", "a b", ":", "::", "x", "x:", ":x", "owner", "owner:", "owner:x", "x@0123456789abcdef",
		"owner:x@0123456789abcdef", "east@1", "rest:m", "probe:m", "{east@1}", "{", "}", "%", "%40", "@", "*", "?", "[a]",
		"\\", "\"", "'", "\n", "\r\n", "\t", "\x00", "\x00x", "\xff\xfe", "模型", "🙂", "resp_" + strings.Repeat("0123456789", 400)}
	for i, id := range ids {
		saveOwner(t, s, id, fmt.Sprint("backend-", i, "@", id), time.Duration(i+2)*time.Hour, now)
	}
	for i, id := range ids {
		assertOwner(t, s, id, now, fmt.Sprint("backend-", i, "@", id))
	}
	for i, b := range backends {
		assertRecords(t, load(t, s, []string{b}, now), recs[i])
	}
	if ok, _ := claim(t, s, "east@1", []string{"m"}, "a", now.Add(time.Hour)); !ok {
		t.Fatal("a claim was refused after the rest ended: an owner's id is taken for a rest")
	}
	for i, id := range ids {
		assertOwner(t, s, id, now.Add(time.Hour), fmt.Sprint("backend-", i, "@", id))
	}
}

// checkOwnerConcurrent checks that concurrent saves and loads of owners, of distinct ids and of one id, are safe:
// each distinct id loads its own backend, and the shared one loads one of the backends saved for it, whole.
func checkOwnerConcurrent(t *testing.T, s ownerStore) {
	now := contractNow
	ctx := context.Background()
	const n = 16
	saved := make(map[string]bool, n)
	for i := range n {
		saved[fmt.Sprint("backend-", i, "@shared")] = true
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			own, shared := fmt.Sprint("resp_", i), fmt.Sprint("backend-", i, "@shared")
			for j := range 10 {
				if err := s.SaveOwners(ctx, []string{own}, fmt.Sprint("backend-", i, "@own"), time.Minute, now); err != nil {
					t.Error(err)
				}
				if err := s.SaveOwners(ctx, []string{"resp_shared"}, shared, time.Minute, now.Add(time.Duration(j))); err != nil {
					t.Error(err)
				}
				got, err := s.LoadOwner(ctx, "resp_shared", now)
				if err != nil {
					t.Error(err)
				} else if !saved[got] {
					t.Errorf("concurrent saves of one id loaded %q; want one of the backends saved", got)
				}
			}
		})
	}
	wg.Wait()
	for i := range n {
		assertOwner(t, s, fmt.Sprint("resp_", i), now, fmt.Sprint("backend-", i, "@own"))
	}
	got, err := s.LoadOwner(ctx, "resp_shared", now)
	if err != nil {
		t.Fatalf("LoadOwner: %v", err)
	}
	if !saved[got] {
		t.Fatalf("concurrent saves of one id loaded %q; want one of the backends saved", got)
	}
}

func saveOwner(t *testing.T, s failover.OwnerStore, id, backend string, ttl time.Duration, now time.Time) {
	t.Helper()
	if err := s.SaveOwners(context.Background(), []string{id}, backend, ttl, now); err != nil {
		t.Fatalf("SaveOwners(%q): %v", id, err)
	}
}

// assertOwner checks that LoadOwner of id at now returns want, without error.
func assertOwner(t *testing.T, s failover.OwnerStore, id string, now time.Time, want string) {
	t.Helper()
	got, err := s.LoadOwner(context.Background(), id, now)
	if err != nil {
		t.Fatalf("LoadOwner(%q): %v", id, err)
	}
	if got != want {
		t.Fatalf("LoadOwner(%q) at contractNow+%s = %q; want %q", id, now.Sub(contractNow), got, want)
	}
}

func load(t *testing.T, s failover.Store, backends []string, now time.Time) []failover.Record {
	t.Helper()
	recs, err := s.Load(context.Background(), backends, now)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return recs
}

func save(t *testing.T, s failover.Store, r failover.Record, now time.Time) {
	t.Helper()
	if err := s.Save(context.Background(), r, now); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func claim(t *testing.T, s failover.Store, backend string, models []string, owner string, now time.Time) (bool, []failover.Record) {
	t.Helper()
	return claimFor(t, s, backend, models, owner, time.Minute, now)
}

func claimFor(t *testing.T, s failover.Store, backend string, models []string, owner string, ttl time.Duration, now time.Time) (bool, []failover.Record) {
	t.Helper()
	ok, recs, err := s.Claim(context.Background(), backend, models, owner, ttl, now)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return ok, recs
}

func release(t *testing.T, s failover.Store, backend string, models []string, owner string) {
	t.Helper()
	if err := s.Release(context.Background(), backend, models, owner); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// assertRecords checks got holds want in any order.
func assertRecords(t *testing.T, got []failover.Record, want ...failover.Record) {
	t.Helper()
	key := func(r failover.Record) string {
		return fmt.Sprintf("%s|%s|%s|%s|%d|%d|%d|%d", r.Backend, r.Model, r.Deployment, r.Kind, r.Status, r.Failures,
			r.Since.UnixNano(), r.Until.UnixNano())
	}
	count := map[string]int{}
	for _, r := range want {
		count[key(r)]++
	}
	for _, r := range got {
		count[key(r)]--
	}
	for k, n := range count {
		if n != 0 {
			t.Fatalf("records differ at %s (%+d)\ngot:  %v\nwant: %v", k, n, got, want)
		}
	}
}
