package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
)

// Run tests that a failover.Store keeps the contract the Client relies on. open returns an empty store; each
// subtest opens its own. Times go through the store to the nanosecond. The subtests named Owner… test the
// optional failover.OwnerStore, and are skipped for a store that does not implement it.
func Run(t *testing.T, open func(t *testing.T) failover.Store) {
	t.Run("SaveThenLoad", func(t *testing.T) { checkSaveThenLoad(t, open) })
	t.Run("EndedRecordsAreNotLoaded", func(t *testing.T) { checkEndedRecordsAreNotLoaded(t, open) })
	t.Run("LongerRestStands", func(t *testing.T) { checkLongerRestStands(t, open) })
	t.Run("EndedRestIsReplaced", func(t *testing.T) { checkEndedRestIsReplaced(t, open) })
	t.Run("Recovered", func(t *testing.T) { checkRecovered(t, open) })
	t.Run("ModelNamesDoNotCollide", func(t *testing.T) { checkModelNamesDoNotCollide(t, open) })
	t.Run("OneProbe", func(t *testing.T) { checkOneProbe(t, open) })
	t.Run("ProbeLapses", func(t *testing.T) { checkProbeLapses(t, open) })
	t.Run("ClaimMeetsRest", func(t *testing.T) { checkClaimMeetsRest(t, open) })
	t.Run("ConcurrentClaims", func(t *testing.T) { checkConcurrentClaims(t, open) })
	t.Run("OwnerSaveThenLoad", func(t *testing.T) { checkOwnerSaveThenLoad(t, openOwners(t, open)) })
	t.Run("OwnerManyAtOnce", func(t *testing.T) { checkOwnerManyAtOnce(t, openOwners(t, open)) })
	t.Run("OwnerReplaced", func(t *testing.T) { checkOwnerReplaced(t, openOwners(t, open)) })
	t.Run("OwnerEndsByNow", func(t *testing.T) { checkOwnerEndsByNow(t, openOwners(t, open)) })
	t.Run("OwnerUnknownID", func(t *testing.T) { checkOwnerUnknownID(t, openOwners(t, open)) })
	t.Run("OwnerIDsDoNotCollide", func(t *testing.T) { checkOwnerIDsDoNotCollide(t, openOwners(t, open)) })
	t.Run("OwnerConcurrent", func(t *testing.T) { checkOwnerConcurrent(t, openOwners(t, open)) })
}

// contractNow is the now the checks give the store: a clock far from the machine's, since a store must judge
// records by the now it is given (clients in a synctest bubble, or a fleet whose clocks differ from the store's,
// depend on it).
var contractNow = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// rec makes a record of backend and model with since and until relative to contractNow; a record about a model
// names a deployment, as the Client's do, so that the store is seen to keep it.
func rec(backend, model, kind string, since, until time.Duration) failover.Record {
	r := failover.Record{Backend: backend, Model: model, Kind: kind, Status: 429, Failures: 2,
		Since: contractNow.Add(since), Until: contractNow.Add(until)}
	if model != "" {
		r.Deployment = "deployment-of-" + model
	}
	return r
}

// checkSaveThenLoad checks that Load returns what Save wrote, whole-backend and per-model records alike, and only
// for the backends asked: a Client loads just the backends it is configured with.
func checkSaveThenLoad(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	s := open(t)
	got := load(t, s, []string{"east@1"}, now)
	if len(got) != 0 {
		t.Fatalf("empty store loaded %v", got)
	}
	region := failover.Record{Backend: "east@1", Kind: failover.RestUnreachable, Failures: 1, Since: now, Until: now.Add(time.Minute)}
	model := rec("east@1", "gpt-4o", failover.RestThrottled, 0, 30*time.Second)
	other := rec("west@2", "gpt-4o", failover.RestFailing, 0, time.Second)
	for _, r := range []failover.Record{region, model, other} {
		save(t, s, r, now)
	}
	assertRecords(t, load(t, s, []string{"east@1"}, now), region, model)
	assertRecords(t, load(t, s, []string{"east@1", "west@2"}, now), region, model, other)
	assertRecords(t, load(t, s, []string{"north@3"}, now))
}

// checkEndedRecordsAreNotLoaded checks that Load leaves out records whose Until is not after now: a Client would
// otherwise keep resting a backend whose rest is over.
func checkEndedRecordsAreNotLoaded(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	s := open(t)
	save(t, s, rec("east@1", "a", failover.RestThrottled, 0, time.Second), now)
	save(t, s, rec("east@1", "b", failover.RestThrottled, 0, time.Minute), now)
	assertRecords(t, load(t, s, []string{"east@1"}, now.Add(time.Second)), rec("east@1", "b", failover.RestThrottled, 0, time.Minute))
}

// checkLongerRestStands checks that Save keeps a rest in force against a shorter one and gives way to a longer
// one, so that a client that saw less of an outage cannot cut short the rest another client set.
func checkLongerRestStands(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	s := open(t)
	long := rec("east@1", "m", failover.RestThrottled, 0, time.Minute)
	save(t, s, long, now)
	save(t, s, rec("east@1", "m", failover.RestFailing, time.Second, 2*time.Second), now.Add(time.Second))
	assertRecords(t, load(t, s, []string{"east@1"}, now.Add(time.Second)), long)
	longer := rec("east@1", "m", failover.RestMissing, 2*time.Second, time.Hour)
	save(t, s, longer, now.Add(2*time.Second))
	assertRecords(t, load(t, s, []string{"east@1"}, now.Add(2*time.Second)), longer)
}

// checkEndedRestIsReplaced checks that a rest that has ended no longer stands against a new, shorter one: the next
// outage must be shared even when it is shorter than the last.
func checkEndedRestIsReplaced(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	s := open(t)
	save(t, s, rec("east@1", "m", failover.RestFailing, 0, 10*time.Second), now)
	next := rec("east@1", "m", failover.RestFailing, 11*time.Second, 13*time.Second)
	save(t, s, next, now.Add(11*time.Second))
	assertRecords(t, load(t, s, []string{"east@1"}, now.Add(11*time.Second)), next)
}

// checkRecovered checks the news of a recovery: it does not end a rest in force, it is saved once the rest has
// ended, it refuses a probe (the backend already serves, so no client needs to probe it), and a new rest
// replaces it even when that rest is shorter.
func checkRecovered(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	s := open(t)
	rest := rec("east@1", "m", failover.RestFailing, 0, 10*time.Second)
	save(t, s, rest, now)
	early := rec("east@1", "m", failover.RestRecovered, time.Second, 3*time.Second)
	save(t, s, early, now.Add(time.Second))
	assertRecords(t, load(t, s, []string{"east@1"}, now.Add(time.Second)), rest)

	recovered := rec("east@1", "m", failover.RestRecovered, 11*time.Second, 13*time.Second)
	save(t, s, recovered, now.Add(11*time.Second))
	assertRecords(t, load(t, s, []string{"east@1"}, now.Add(11*time.Second)), recovered)
	ok, recs := claim(t, s, "east@1", []string{"m"}, "a", now.Add(11*time.Second))
	if ok {
		t.Fatal("claimed a probe of a backend whose recovery is news")
	}
	assertRecords(t, recs, recovered)

	shorter := rec("east@1", "m", failover.RestFailing, 12*time.Second, 12*time.Second+500*time.Millisecond)
	save(t, s, shorter, now.Add(12*time.Second))
	assertRecords(t, load(t, s, []string{"east@1"}, now.Add(12*time.Second)), shorter)
}

// checkModelNamesDoNotCollide checks that records and probes of models whose names look like a store's own keys or
// separators stay apart, since model names come from configuration and a store may build keys from them.
func checkModelNamesDoNotCollide(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	s := open(t)
	names := []string{"", "m", "probe:m", "rest:m", ":", "m:x", "模型", "a b", "{east@1}"}
	var want []failover.Record
	for i, m := range names {
		r := rec("east@1", m, failover.RestThrottled, 0, time.Duration(i+1)*time.Minute)
		if m == "" {
			r.Kind = failover.RestUnreachable
		}
		save(t, s, r, now)
		want = append(want, r)
	}
	assertRecords(t, load(t, s, []string{"east@1"}, now), want...)
	for _, m := range names {
		if ok, _ := claim(t, s, "east@1", []string{m}, "a", now.Add(time.Hour)); !ok {
			t.Fatalf("claim of %q refused after every rest ended", m)
		}
	}
}

// checkOneProbe checks that a backend or model has one probe at a time, held per owner, per model and per
// backend, and that only its owner's Release ends it: otherwise every client would probe a resting backend at once.
func checkOneProbe(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	s := open(t)
	if ok, _ := claim(t, s, "east@1", []string{"", "m"}, "a", now); !ok {
		t.Fatal("first claim refused")
	}
	if ok, recs := claim(t, s, "east@1", []string{"m"}, "b", now); ok || len(recs) != 0 {
		t.Fatalf("second owner's claim: %v %v; want refused with no records", ok, recs)
	}
	if ok, _ := claim(t, s, "east@1", []string{""}, "b", now); ok {
		t.Fatal("second owner claimed the whole backend while the first probes it")
	}
	if ok, _ := claim(t, s, "east@1", []string{"other"}, "b", now); !ok {
		t.Fatal("a probe of one model held another model's probe")
	}
	if ok, _ := claim(t, s, "west@2", []string{"m"}, "b", now); !ok {
		t.Fatal("a probe of one backend held another backend's probe")
	}
	if ok, _ := claim(t, s, "east@1", []string{"m"}, "a", now); !ok {
		t.Fatal("the owner's own claim again was refused")
	}
	release(t, s, "east@1", []string{"", "m"}, "b")
	if ok, _ := claim(t, s, "east@1", []string{"m"}, "c", now); ok {
		t.Fatal("a release by another owner ended the probe")
	}
	release(t, s, "east@1", []string{"", "m"}, "a")
	if ok, _ := claim(t, s, "east@1", []string{"", "m"}, "c", now); !ok {
		t.Fatal("claim refused after the owner released")
	}
}

// checkProbeLapses checks that a probe lapses after its ttl, so that a client that died while probing does not keep
// a backend from every other client's probe for good.
func checkProbeLapses(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	s := open(t)
	if ok, _ := claimFor(t, s, "east@1", []string{"m"}, "a", 10*time.Second, now); !ok {
		t.Fatal("first claim refused")
	}
	if ok, _ := claim(t, s, "east@1", []string{"m"}, "b", now.Add(9*time.Second)); ok {
		t.Fatal("claimed before the first probe lapsed")
	}
	if ok, _ := claim(t, s, "east@1", []string{"m"}, "b", now.Add(10*time.Second)); !ok {
		t.Fatal("claim refused after the first probe lapsed")
	}
}

// checkClaimMeetsRest checks that Claim refuses while a rest is in force, returns that rest so the caller learns
// of it, and claims nothing when it refuses; and that the rest a failed probe saved before releasing is met by
// the next claim.
func checkClaimMeetsRest(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	s := open(t)
	r := rec("east@1", "m", failover.RestFailing, 0, 5*time.Second)
	save(t, s, r, now)
	ok, recs := claim(t, s, "east@1", []string{"", "m"}, "a", now.Add(time.Second))
	if ok {
		t.Fatal("claimed a probe of a model that rests")
	}
	assertRecords(t, recs, r)
	if ok, _ := claim(t, s, "east@1", []string{"m"}, "b", now.Add(5*time.Second)); !ok {
		t.Fatal("refused claim after the rest ended; the refused claim must not have claimed")
	}
	// A failed probe: its rest is saved, then its probe released; the next claim meets the rest.
	next := rec("east@1", "m", failover.RestFailing, 6*time.Second, 8*time.Second)
	save(t, s, next, now.Add(6*time.Second))
	release(t, s, "east@1", []string{"m"}, "b")
	ok, recs = claim(t, s, "east@1", []string{"m"}, "c", now.Add(6*time.Second))
	if ok {
		t.Fatal("claimed while the failed probe's rest is in force")
	}
	assertRecords(t, recs, next)
}

// checkConcurrentClaims checks that of many claims at once exactly one wins: Claim must be atomic, which the
// sequential checks cannot show.
func checkConcurrentClaims(t *testing.T, open func(t *testing.T) failover.Store) {
	now := contractNow
	ctx := context.Background()
	s := open(t)
	const n = 16
	var wg sync.WaitGroup
	wins := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			owner := fmt.Sprint("owner-", i)
			ok, _, err := s.Claim(ctx, "east@1", []string{"", "m"}, owner, time.Minute, now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins <- owner
			}
		})
	}
	wg.Wait()
	close(wins)
	var won []string
	for w := range wins {
		won = append(won, w)
	}
	if len(won) != 1 {
		t.Fatalf("%d concurrent claims won (%v); want exactly 1", len(won), won)
	}
}
