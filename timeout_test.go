package failover_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run in a synctest bubble over failovertest's in-memory network: time is fake, so a 30-second
// attempt timeout passes at once and exactly.

func TestAttemptTimeoutFailsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithAttemptTimeout(30*time.Second))
		servers[0].Script(failovertest.Hang())

		var rec recorder
		start := time.Now()
		content, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from westus.", content)
		assert.Equal(t, 30*time.Second, time.Since(start), "the hung region costs exactly the attempt timeout")
		first := rec.first()
		assert.ErrorIs(t, first.Err, failover.ErrAttemptTimeout)
		assert.NotErrorIs(t, first.Err, context.DeadlineExceeded, "an attempt timeout is not the caller's deadline")
		assert.Equal(t, failover.OutcomeFailedOver, first.Outcome)
		assert.Equal(t, 30*time.Second, first.Duration)
	})
}

func TestAttemptTimeoutCoversASlowBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithAttemptTimeout(10*time.Second))
		stalled := failovertest.OK("too late")
		stalled.BodyDelay = 11 * time.Second // headers at once, body after the attempt timeout
		servers[0].Script(stalled)
		servers[1].Script(failovertest.Slow(9*time.Second, failovertest.OK("in time")))

		var rec recorder
		content, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "in time", content)
		first := rec.first()
		assert.Equal(t, 200, first.Status, "the stalled region had answered 200 before its body stalled")
		assert.ErrorIs(t, first.Err, failover.ErrAttemptTimeout)
	})
}

func TestEveryRegionTimingOutIsExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithAttemptTimeout(5*time.Second))
		for _, s := range servers {
			s.SetDefault(failovertest.Hang())
		}
		start := time.Now()
		_, err := client.ChatCompletion(t.Context(), hello())
		require.ErrorIs(t, err, failover.ErrExhausted)
		assert.ErrorIs(t, err, failover.ErrAttemptTimeout)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 10*time.Second, time.Since(start))
	})
}

func TestCallerDeadlineStopsTheSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithAttemptTimeout(time.Minute))
		servers[0].Script(failovertest.Hang())

		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		var rec recorder
		start := time.Now()
		_, err := client.ChatCompletion(rec.context(ctx), hello())
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotErrorIs(t, err, failover.ErrExhausted)
		assert.Equal(t, 20*time.Second, time.Since(start), "the caller's deadline, not the attempt timeout, ends it")
		assert.Zero(t, servers[1].Requests())
		assert.Equal(t, failover.OutcomeCanceled, rec.last().Outcome)
	})
}

func TestStreamOutlivesTheAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, client := bubbleFleet(t, []string{"eastus"}, failover.WithAttemptTimeout(time.Second))
		stream, err := doerClient(client).CreateChatCompletionStream(t.Context(), chatRequest())
		require.NoError(t, err)
		defer stream.Close()
		time.Sleep(5 * time.Second) // fake time: the attempt timeout would have cut the stream by now
		text, err := failovertest.ReadStream(stream)
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", text)
	})
}

// TestStreamStartingAsTheTimeoutFires checks the race between a stream's first byte and the attempt timeout:
// whichever wins, the request is served, and an attempt that failed over says why.
func TestStreamStartingAsTheTimeoutFires(t *testing.T) {
	for range 20 {
		synctest.Test(t, func(t *testing.T) {
			servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithAttemptTimeout(time.Second))
			servers[0].Script(failovertest.Reply{BodyDelay: time.Second})
			var rec recorder
			stream, err := doerClient(client).CreateChatCompletionStream(rec.context(t.Context()), chatRequest())
			require.NoError(t, err)
			defer stream.Close()
			text, err := failovertest.ReadStream(stream)
			require.NoError(t, err, "a stream that was handed over is never cut by the attempt timeout")
			assert.Contains(t, []string{"Hello from eastus.", "Hello from westus."}, text)
			for _, a := range rec.attempts {
				if a.Outcome == failover.OutcomeFailedOver {
					assert.ErrorIs(t, a.Err, failover.ErrAttemptTimeout)
				}
			}
		})
	}
}

// TestStreamTimeoutRaceInRealTime provokes, with real timers on loopback, the narrow race that fake time does not:
// the first byte arriving just as the attempt timer fires, before its callback has run. Nothing it asserts depends
// on which side wins, so it cannot flake; it only gives the losing orders a chance to happen.
func TestStreamTimeoutRaceInRealTime(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	// Under -race a healthy region's attempt can take 2 ms too; its rests are kept to a millisecond, so that such a
	// moment costs the loop a millisecond rather than a backoff of seconds (the test took 2 s to 90 s).
	client := newClient(t, regionsOf(servers...), failover.WithAttemptTimeout(2*time.Millisecond),
		failover.WithBackoff(func(int) time.Duration { return time.Millisecond }))
	for range 200 {
		servers[0].Script(failovertest.Reply{BodyDelay: 2 * time.Millisecond})
		var rec recorder
		stream, err := doerClient(client).CreateChatCompletionStream(rec.context(t.Context()), chatRequest())
		if err != nil {
			// westus timed out too, on a slow moment: as a doer the client answers for the regions (503).
			require.NotNil(t, exhaustedAnswer(err), "%v", err)
		} else {
			_, err = failovertest.ReadStream(stream)
			stream.Close()
			require.NoError(t, err, "a stream that was handed over is never cut by the attempt timeout")
		}
		for _, a := range rec.attempts {
			if a.Outcome == failover.OutcomeFailedOver {
				require.ErrorIs(t, a.Err, failover.ErrAttemptTimeout, "a failed-over attempt says why")
			}
		}
	}
}
