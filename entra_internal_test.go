package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests drive tokenSource in a synctest bubble: time.Sleep moves the fake clock at once, and synctest.Wait
// tells when every goroutine is parked, so "one GetToken in flight" and "returns without waiting" are exact
// statements rather than races against a real clock.

// errTokenService stands for an identity service that is down.
var errTokenService = errors.New("token service unavailable")

// fakeCredential is an azcore.TokenCredential whose answers the test scripts through respond. It counts the calls,
// records the scopes asked for and how many calls run at once.
type fakeCredential struct {
	// respond answers the call-th call (counting from 1). It may block, return an error or panic.
	respond func(ctx context.Context, call int) (azcore.AccessToken, error)

	mu          sync.Mutex
	calls       int
	inFlight    int
	maxInFlight int
	scopes      [][]string
}

func (c *fakeCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	c.calls++
	call := c.calls
	c.inFlight++
	c.maxInFlight = max(c.maxInFlight, c.inFlight)
	c.scopes = append(c.scopes, slices.Clone(opts.Scopes))
	c.mu.Unlock()
	defer func() { // deferred so that a panicking respond still counts as ended
		c.mu.Lock()
		c.inFlight--
		c.mu.Unlock()
	}()
	return c.respond(ctx, call)
}

// Calls is how many times GetToken was called.
func (c *fakeCredential) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// InFlight is how many GetToken calls have not returned yet.
func (c *fakeCredential) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight
}

// tokenName is the token the scripted credentials give on their call-th call.
func tokenName(call int) string { return fmt.Sprintf("token-%d", call) }

// bearer is the header value the source must give for token.
func bearer(token string) []string { return []string{"Bearer " + token} }

// issue answers every call at once with a fresh token ("token-<call>") that lives for life.
func issue(life time.Duration) func(context.Context, int) (azcore.AccessToken, error) {
	return func(_ context.Context, call int) (azcore.AccessToken, error) {
		return azcore.AccessToken{Token: tokenName(call), ExpiresOn: time.Now().Add(life)}, nil
	}
}

// gated answers like issue(life), but only once release is closed, or with ctx's error when ctx ends first, as
// azidentity's credentials do.
func gated(release <-chan struct{}, life time.Duration) func(context.Context, int) (azcore.AccessToken, error) {
	return func(ctx context.Context, call int) (azcore.AccessToken, error) {
		select {
		case <-release:
			return issue(life)(ctx, call)
		case <-ctx.Done():
			return azcore.AccessToken{}, ctx.Err()
		}
	}
}

// newSource is a tokenSource over a fresh fake credential.
func newSource(respond func(context.Context, int) (azcore.AccessToken, error)) (*tokenSource, *fakeCredential) {
	cred := &fakeCredential{respond: respond}
	return &tokenSource{cred: cred}, cred
}

// sleepUntil advances the bubble's fake clock to at.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// result is what one authorization call gave.
type result struct {
	header []string
	err    error
}

// authorizeAsync calls authorization in a new goroutine; the answer comes on the channel (buffered, so the
// goroutine never lingers).
func authorizeAsync(ctx context.Context, s *tokenSource) <-chan result {
	ch := make(chan result, 1)
	go func() {
		h, err := s.authorization(ctx)
		ch <- result{h, err}
	}()
	return ch
}

func TestTokenSourceAsksForTheEntraScopeAndSendsABearerHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, cred := newSource(issue(time.Hour))
		h, err := s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, []string{"Bearer token-1"}, h, "exactly one value, the scheme, one space and the token")
		assert.Equal(t, "https://cognitiveservices.azure.com/.default", EntraScope)
		assert.Equal(t, [][]string{{EntraScope}}, cred.scopes, "one call, for exactly the Azure AI services scope")
	})
}

func TestTokenSourceCachesAValidToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, cred := newSource(issue(time.Hour))
		// 100 calls 30 s apart span 49.5 minutes: all before the 55-minute refresh point.
		for i := range 100 {
			h, err := s.authorization(t.Context())
			require.NoError(t, err)
			require.Equal(t, bearer("token-1"), h, "call %d", i)
			time.Sleep(30 * time.Second)
		}
		assert.Equal(t, 1, cred.Calls())
	})
}

func TestTokenSourceConcurrentCallersShareOneFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		s, cred := newSource(gated(release, time.Hour))
		const callers = 50
		answers := make([]<-chan result, callers)
		for i := range answers {
			answers[i] = authorizeAsync(t.Context(), s)
		}
		synctest.Wait() // every caller is parked: one in GetToken, the others waiting for it
		assert.Equal(t, 1, cred.Calls())
		assert.Equal(t, 1, cred.InFlight())

		close(release)
		for i, ch := range answers {
			r := <-ch
			require.NoError(t, r.err, "caller %d", i)
			assert.Equal(t, bearer("token-1"), r.header, "caller %d", i)
		}
		assert.Equal(t, 1, cred.Calls(), "one fetch served all 50")
		assert.Equal(t, 1, cred.maxInFlight)
	})
}

// TestTokenSourceWaitersShareATokenThatIsNotKept: a token without a future expiry is not cached, but the callers
// that waited for its fetch still share it rather than fetching one after another.
func TestTokenSourceWaitersShareATokenThatIsNotKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		s, cred := newSource(gated(release, 0))
		answers := make([]<-chan result, 10)
		for i := range answers {
			answers[i] = authorizeAsync(t.Context(), s)
		}
		synctest.Wait()
		close(release)
		for i, ch := range answers {
			r := <-ch
			require.NoError(t, r.err, "caller %d", i)
			assert.Equal(t, bearer("token-1"), r.header, "caller %d", i)
		}
		assert.Equal(t, 1, cred.Calls(), "one fetch served the ten that waited")
		_, err := s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, 2, cred.Calls(), "and was not kept for later")
	})
}

func TestTokenSourceRefreshesFiveMinutesBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s, cred := newSource(issue(time.Hour))
		_, err := s.authorization(t.Context())
		require.NoError(t, err)

		sleepUntil(start.Add(55*time.Minute - time.Nanosecond))
		h, err := s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, bearer("token-1"), h, "just before the margin the token is kept")
		assert.Equal(t, 1, cred.Calls())

		sleepUntil(start.Add(55 * time.Minute))
		h, err = s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, bearer("token-2"), h, "five minutes before expiry the token is replaced")
		assert.Equal(t, 2, cred.Calls())

		// The new token is timed from its own fetch: next refresh at 55+55 minutes.
		sleepUntil(start.Add(110*time.Minute - time.Nanosecond))
		h, _ = s.authorization(t.Context())
		assert.Equal(t, bearer("token-2"), h)
		sleepUntil(start.Add(110 * time.Minute))
		h, _ = s.authorization(t.Context())
		assert.Equal(t, bearer("token-3"), h)
	})
}

func TestTokenSourceRefreshesAShortLivedTokenAtHalfLife(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s, cred := newSource(issue(4 * time.Minute))
		_, err := s.authorization(t.Context())
		require.NoError(t, err)

		sleepUntil(start.Add(2*time.Minute - time.Nanosecond))
		h, err := s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, bearer("token-1"), h)
		assert.Equal(t, 1, cred.Calls())

		sleepUntil(start.Add(2 * time.Minute))
		h, err = s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, bearer("token-2"), h, "a 4-minute token is replaced after 2 minutes, not 5 before expiry")
		assert.Equal(t, 2, cred.Calls())
	})
}

func TestTokenSourceHonoursAnEarlierRefreshOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s, cred := newSource(func(_ context.Context, call int) (azcore.AccessToken, error) {
			now := time.Now()
			return azcore.AccessToken{Token: tokenName(call), ExpiresOn: now.Add(time.Hour), RefreshOn: now.Add(10 * time.Minute)}, nil
		})
		_, err := s.authorization(t.Context())
		require.NoError(t, err)

		sleepUntil(start.Add(10*time.Minute - time.Nanosecond))
		h, _ := s.authorization(t.Context())
		assert.Equal(t, bearer("token-1"), h)
		assert.Equal(t, 1, cred.Calls())

		sleepUntil(start.Add(10 * time.Minute))
		h, err = s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, bearer("token-2"), h, "the identity service's RefreshOn comes before the 55-minute point")
		assert.Equal(t, 2, cred.Calls())
	})
}

func TestTokenSourceIgnoresALaterRefreshOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s, cred := newSource(func(_ context.Context, call int) (azcore.AccessToken, error) {
			now := time.Now()
			return azcore.AccessToken{Token: tokenName(call), ExpiresOn: now.Add(time.Hour), RefreshOn: now.Add(58 * time.Minute)}, nil
		})
		_, err := s.authorization(t.Context())
		require.NoError(t, err)

		sleepUntil(start.Add(55 * time.Minute))
		h, err := s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, bearer("token-2"), h, "a RefreshOn past the margin point does not delay the refresh")
		assert.Equal(t, 2, cred.Calls())
	})
}

// TestTokenSourceStaleRefreshOnIsRateLimited: managed identity (MSAL) sets RefreshOn to half the token's life;
// once that has passed and the identity endpoint fails, MSAL returns its cached token with the stale RefreshOn and
// no error. Taking that RefreshOn as the refresh point would call GetToken on every request for as long as the
// endpoint is down.
func TestTokenSourceStaleRefreshOnIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s, cred := newSource(func(context.Context, int) (azcore.AccessToken, error) {
			// The cached token: valid for another 30 minutes, due for refresh since a minute before start.
			return azcore.AccessToken{Token: "cached", ExpiresOn: start.Add(30 * time.Minute), RefreshOn: start.Add(-time.Minute)}, nil
		})
		for range 10 { // ten requests, one a second
			h, err := s.authorization(t.Context())
			require.NoError(t, err)
			require.Equal(t, bearer("cached"), h)
			time.Sleep(time.Second)
		}
		assert.LessOrEqual(t, cred.Calls(), 2, "a refresh that brings no fresher token is not retried within refreshRetry")
	})
}

func TestTokenSourceServesTheValidTokenDuringARefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		release := make(chan struct{})
		s, cred := newSource(func(ctx context.Context, call int) (azcore.AccessToken, error) {
			if call == 1 {
				return issue(time.Hour)(ctx, call)
			}
			return gated(release, time.Hour)(ctx, call) // the refresh hangs until released
		})
		_, err := s.authorization(t.Context())
		require.NoError(t, err)

		sleepUntil(start.Add(55 * time.Minute))
		refresher := authorizeAsync(t.Context(), s)
		synctest.Wait()
		require.Equal(t, 1, cred.InFlight(), "the refresh is in flight")

		// Others, on this goroutine and on 20 more, get the old token without waiting: were any of them to wait,
		// synctest would report a deadlock, as the refresh only ends when released below.
		at := time.Now()
		for range 5 {
			h, err := s.authorization(t.Context())
			require.NoError(t, err)
			assert.Equal(t, bearer("token-1"), h)
		}
		others := make([]<-chan result, 20)
		for i := range others {
			others[i] = authorizeAsync(t.Context(), s)
		}
		synctest.Wait()
		for _, ch := range others {
			select {
			case r := <-ch:
				require.NoError(t, r.err)
				assert.Equal(t, bearer("token-1"), r.header)
			default:
				t.Fatal("a caller with a valid token waited for the refresh")
			}
		}
		assert.Equal(t, at, time.Now(), "no fake time passed")
		assert.Equal(t, 2, cred.Calls(), "no second refresh started")

		close(release)
		r := <-refresher
		require.NoError(t, r.err)
		assert.Equal(t, bearer("token-2"), r.header)
		h, err := s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, bearer("token-2"), h)
		assert.Equal(t, 2, cred.Calls())
	})
}

func TestTokenSourceFailedRefreshKeepsTheValidTokenAndRetriesAfter30s(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var logs bytes.Buffer
		s, cred := newSource(func(ctx context.Context, call int) (azcore.AccessToken, error) {
			if call == 1 {
				return issue(time.Hour)(ctx, call)
			}
			return azcore.AccessToken{}, errTokenService
		})
		s.logger = slog.New(slog.NewTextHandler(&logs, nil))
		_, err := s.authorization(t.Context())
		require.NoError(t, err)

		failed := start.Add(55 * time.Minute)
		sleepUntil(failed)
		h, err := s.authorization(t.Context())
		require.NoError(t, err, "the refresh failed, but the current token still works")
		assert.Equal(t, bearer("token-1"), h)
		assert.Equal(t, 2, cred.Calls())
		assert.Contains(t, logs.String(), "refreshing the Entra ID token failed")
		assert.Contains(t, logs.String(), errTokenService.Error())
		assert.NotContains(t, logs.String(), "token-1", "the log never shows the token")

		// Within refreshRetry the failed refresh is not tried again.
		for _, after := range []time.Duration{0, time.Second, refreshRetry - time.Nanosecond} {
			sleepUntil(failed.Add(after))
			h, err = s.authorization(t.Context())
			require.NoError(t, err)
			assert.Equal(t, bearer("token-1"), h)
			assert.Equal(t, 2, cred.Calls(), "%s after the failure", after)
		}

		// After it, one more attempt; it fails too, and the next 30 s are quiet again.
		sleepUntil(failed.Add(refreshRetry))
		h, err = s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, bearer("token-1"), h)
		assert.Equal(t, 3, cred.Calls())
		_, err = s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, 3, cred.Calls())

		// Once the token has expired there is nothing to fall back on: the caller gets the credential's error.
		sleepUntil(start.Add(time.Hour))
		h, err = s.authorization(t.Context())
		require.ErrorIs(t, err, errTokenService)
		assert.Nil(t, h)
		assert.Equal(t, 4, cred.Calls())
	})
}

func TestTokenSourceWaitersShareAFailedFetchsError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		s, cred := newSource(func(ctx context.Context, _ int) (azcore.AccessToken, error) {
			<-release
			return azcore.AccessToken{}, errTokenService
		})
		answers := make([]<-chan result, 10)
		for i := range answers {
			answers[i] = authorizeAsync(t.Context(), s)
		}
		synctest.Wait()
		require.Equal(t, 1, cred.InFlight())

		close(release)
		for i, ch := range answers {
			r := <-ch
			assert.ErrorIs(t, r.err, errTokenService, "caller %d", i)
			assert.Nil(t, r.header, "caller %d", i)
		}
		assert.Equal(t, 1, cred.Calls(), "the waiters took the fetch's error rather than fetching again")

		// The failure is given again, without a fetch, for failureHold; then the next call tries again.
		_, err := s.authorization(t.Context())
		require.ErrorIs(t, err, errTokenService)
		assert.Equal(t, 1, cred.Calls(), "regions sharing the credential do not each wait for a failing service")
		time.Sleep(failureHold - time.Nanosecond)
		_, err = s.authorization(t.Context())
		require.ErrorIs(t, err, errTokenService)
		assert.Equal(t, 1, cred.Calls())
		time.Sleep(time.Nanosecond)
		_, err = s.authorization(t.Context())
		require.ErrorIs(t, err, errTokenService)
		assert.Equal(t, 2, cred.Calls())
	})
}

func TestTokenSourceAbandonedFetchIsNotInherited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{}) // never closed: the first fetch only ends with its caller's context
		s, cred := newSource(func(ctx context.Context, call int) (azcore.AccessToken, error) {
			if call == 1 {
				return gated(release, time.Hour)(ctx, call)
			}
			return issue(time.Hour)(ctx, call)
		})
		fetcherCtx, cancel := context.WithCancel(t.Context())
		defer cancel()
		fetcher := authorizeAsync(fetcherCtx, s)
		synctest.Wait() // the fetcher is in GetToken
		waiter := authorizeAsync(t.Context(), s)
		synctest.Wait() // the waiter waits for the fetch
		require.Equal(t, 1, cred.Calls())

		cancel()
		f := <-fetcher
		require.ErrorIs(t, f.err, context.Canceled, "the fetcher gets its own context's error")
		w := <-waiter
		require.NoError(t, w.err, "the waiter's context is live: it fetched for itself")
		assert.Equal(t, bearer("token-2"), w.header)
		assert.Equal(t, 2, cred.Calls())
	})
}

func TestTokenSourceWaiterLeavesWhenItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		s, cred := newSource(gated(release, time.Hour))
		fetcher := authorizeAsync(t.Context(), s)
		synctest.Wait()

		errGaveUp := errors.New("attempt timed out")
		ctx, cancel := context.WithTimeoutCause(t.Context(), time.Second, errGaveUp)
		defer cancel()
		start := time.Now()
		h, err := s.authorization(ctx)
		require.ErrorIs(t, err, errGaveUp, "the context's cause, not a bare DeadlineExceeded")
		assert.Nil(t, h)
		assert.Equal(t, time.Second, time.Since(start), "it left when its context ended, not when the fetch did")
		assert.Equal(t, 1, cred.InFlight(), "the fetch goes on for the caller that started it")

		// An already-canceled waiter leaves at once too.
		canceled, cancelNow := context.WithCancelCause(t.Context())
		cancelNow(errGaveUp)
		_, err = s.authorization(canceled)
		require.ErrorIs(t, err, errGaveUp)

		close(release)
		r := <-fetcher
		require.NoError(t, r.err)
		assert.Equal(t, bearer("token-1"), r.header)
		assert.Equal(t, 1, cred.Calls())
	})
}

func TestTokenSourceCredentialPanicReleasesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		s, cred := newSource(func(ctx context.Context, call int) (azcore.AccessToken, error) {
			if call == 1 {
				<-release
				panic("credential exploded")
			}
			return issue(time.Hour)(ctx, call)
		})
		recovered := make(chan any, 1)
		go func() {
			defer func() { recovered <- recover() }()
			_, _ = s.authorization(t.Context())
		}()
		synctest.Wait() // the panicking fetch is in GetToken
		waiter := authorizeAsync(t.Context(), s)
		synctest.Wait()

		close(release)
		assert.Equal(t, "credential exploded", <-recovered, "the panic reaches the fetching caller unchanged")
		w := <-waiter
		require.Error(t, w.err, "the waiter is released with an error, not left waiting")
		assert.Contains(t, w.err.Error(), "credential panicked")
		assert.Contains(t, w.err.Error(), "credential exploded")
		assert.Equal(t, restNoToken, credentialRest(w.err), "a panic is no verdict on the credential's configuration")
		assert.Nil(t, w.header)
		assert.Equal(t, 1, cred.Calls())
		assert.Equal(t, 0, cred.InFlight())

		time.Sleep(failureHold) // the panic's error is held like any failure
		h, err := s.authorization(t.Context())
		require.NoError(t, err, "the source is not stuck after the panic")
		assert.Equal(t, bearer("token-2"), h)
		assert.Equal(t, 2, cred.Calls())
	})
}

func TestTokenSourceRefusesMalformedTokens(t *testing.T) {
	for name, token := range map[string]string{
		"empty":        "",
		"space":        "eyJhbGci OiJSUzI1NiJ9",
		"newline":      "eyJhbGciOiJSUzI1NiJ9\n",
		"CRLF":         "eyJhbGciOiJSUzI1NiJ9\r\nX-Injected: 1",
		"tab":          "eyJhbGci\tOiJSUzI1NiJ9",
		"double quote": `"eyJhbGciOiJSUzI1NiJ9"`,
		"single quote": "'eyJhbGciOiJSUzI1NiJ9'",
		"DEL":          "eyJhbGciOiJSUzI1NiJ9\x7f",
		"NUL":          "eyJhbGciOiJSUzI1NiJ9\x00",
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, cred := newSource(func(context.Context, int) (azcore.AccessToken, error) {
					return azcore.AccessToken{Token: token, ExpiresOn: time.Now().Add(time.Hour)}, nil
				})
				h, err := s.authorization(t.Context())
				require.Error(t, err)
				assert.Nil(t, h)
				if token != "" {
					assert.NotContains(t, err.Error(), token, "the error never shows the token")
					assert.NotContains(t, err.Error(), "eyJhbGci")
				}
				assert.Equal(t, [2]string{}, s.secrets(), "a token never sent is not remembered")
				assert.Equal(t, restNoToken, credentialRest(err))

				_, err = s.authorization(t.Context())
				require.Error(t, err)
				assert.Equal(t, 1, cred.Calls(), "the failure is given again for a moment, without a fetch")
				time.Sleep(failureHold)
				_, err = s.authorization(t.Context())
				require.Error(t, err)
				assert.Equal(t, 2, cred.Calls(), "a refused token is not cached")
			})
		})
	}
}

func TestTokenSourceMalformedRefreshKeepsTheValidToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s, cred := newSource(func(ctx context.Context, call int) (azcore.AccessToken, error) {
			if call == 1 {
				return issue(time.Hour)(ctx, call)
			}
			return azcore.AccessToken{Token: "bad token", ExpiresOn: time.Now().Add(time.Hour)}, nil
		})
		_, err := s.authorization(t.Context())
		require.NoError(t, err)
		sleepUntil(start.Add(55 * time.Minute))
		h, err := s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, bearer("token-1"), h)
		assert.Equal(t, 2, cred.Calls())
		assert.Equal(t, [2]string{"token-1", ""}, s.secrets())
	})
}

func TestTokenSourceDoesNotCacheATokenWithoutAFutureExpiry(t *testing.T) {
	for name, expiry := range map[string]func(now time.Time) time.Time{
		"zero": func(time.Time) time.Time { return time.Time{} },
		"past": func(now time.Time) time.Time { return now.Add(-time.Second) },
		"now":  func(now time.Time) time.Time { return now },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, cred := newSource(func(_ context.Context, call int) (azcore.AccessToken, error) {
					return azcore.AccessToken{Token: tokenName(call), ExpiresOn: expiry(time.Now())}, nil
				})
				h, err := s.authorization(t.Context())
				require.NoError(t, err)
				assert.Equal(t, bearer("token-1"), h, "the token serves the call that fetched it")
				h, err = s.authorization(t.Context())
				require.NoError(t, err)
				assert.Equal(t, bearer("token-2"), h, "and is not kept for the next one")
				assert.Equal(t, 2, cred.Calls())
				assert.Equal(t, [2]string{"token-2", "token-1"}, s.secrets(), "both were sent: both are secrets")
			})
		})
	}
}

func TestTokenSourceSecretsAreTheCurrentAndPreviousTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s, _ := newSource(issue(time.Hour))
		assert.Equal(t, [2]string{}, s.secrets())

		_, err := s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, [2]string{"token-1", ""}, s.secrets())

		sleepUntil(start.Add(55 * time.Minute))
		_, err = s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, [2]string{"token-2", "token-1"}, s.secrets(), "a request may still carry the previous token")

		sleepUntil(start.Add(110 * time.Minute))
		_, err = s.authorization(t.Context())
		require.NoError(t, err)
		assert.Equal(t, [2]string{"token-3", "token-2"}, s.secrets())
	})
}

// valueCredential is a credential passed by value, and not comparable: == on it as a map key would panic.
type valueCredential struct{ claims map[string]string }

func (valueCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errTokenService
}

// funcCredential is a credential of func kind, not comparable either.
type funcCredential func(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error)

func (f funcCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return f(ctx, opts)
}

func TestTokenSourcesShareOnlyPointerCredentials(t *testing.T) {
	m := tokenSources{}
	logger := slog.New(slog.DiscardHandler)
	a, b := &fakeCredential{respond: issue(time.Hour)}, &fakeCredential{respond: issue(time.Hour)}

	sa := m.get(a, logger)
	require.NotNil(t, sa)
	assert.Same(t, sa, m.get(a, nil), "regions with the same credential share one source")
	assert.NotSame(t, sa, m.get(b, logger), "another credential has its own")
	assert.Same(t, a, sa.cred)
	assert.Same(t, logger, sa.logger)

	value := valueCredential{claims: map[string]string{"tid": "x"}}
	var v1, v2 *tokenSource
	require.NotPanics(t, func() { v1, v2 = m.get(value, logger), m.get(value, logger) })
	assert.NotSame(t, v1, v2, "a credential that is not a pointer is not shared")
	assert.Equal(t, value, v1.cred)
	assert.Same(t, logger, v1.logger)

	fn := funcCredential(func(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
		return azcore.AccessToken{}, errTokenService
	})
	require.NotPanics(t, func() { v1, v2 = m.get(fn, logger), m.get(fn, logger) })
	assert.NotSame(t, v1, v2)
	assert.Len(t, m, 2, "only the two pointer credentials are kept")
}

// authFailed builds the error azidentity gives when the identity service answered status.
func authFailed(status int) error {
	return &azidentity.AuthenticationFailedError{RawResponse: &http.Response{
		StatusCode: status,
		Status:     fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader(`{"error":"invalid_client"}`)),
	}}
}

func TestCredentialRest(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want restKind
	}{
		{"refused 400", authFailed(http.StatusBadRequest), restFault},
		{"refused 401", authFailed(http.StatusUnauthorized), restFault},
		{"refused 403", authFailed(http.StatusForbidden), restFault},
		{"wrapped refusal", fmt.Errorf("chained: %w", authFailed(http.StatusUnauthorized)), restFault},
		{"timeout 408", authFailed(http.StatusRequestTimeout), restNoToken},
		{"throttled 429", authFailed(http.StatusTooManyRequests), restNoToken},
		{"server 500", authFailed(http.StatusInternalServerError), restNoToken},
		{"unavailable 503", authFailed(http.StatusServiceUnavailable), restNoToken},
		// AuthenticationFailedError is NonRetriable too: without a response it must still count as transient.
		{"no response", &azidentity.AuthenticationFailedError{}, restNoToken},
		{"credential unavailable", azidentity.NewCredentialUnavailableError("no managed identity endpoint"), restFault},
		{"wrapped unavailable", fmt.Errorf("chained: %w", azidentity.NewCredentialUnavailableError("x")), restFault},
		{"plain error", errTokenService, restNoToken},
		{"deadline", context.DeadlineExceeded, restNoToken},
		{"canceled", context.Canceled, restNoToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.NotPanics(t, func() { _ = tc.err.Error() }, "the error can be printed, as the failover's logs do")
			assert.Equal(t, tc.want, credentialRest(tc.err))
		})
	}
}
