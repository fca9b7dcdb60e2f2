package failover_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEntraFromEnvironment drives the real azidentity path: AZURE_OPENAI_AUTH=entra makes NewFromEnv build a
// DefaultAzureCredential, which finds the App Service identity endpoint on loopback.
func TestEntraFromEnvironment(t *testing.T) {
	isolateEnv(t)
	identity := failovertest.NewIdentity(nil)
	t.Cleanup(identity.Close)
	useIdentity(t, identity)
	// Two regions that take tokens only (their keys are never sent), and one with a key.
	entra := startRegions(t, []string{"eastus", "swedencentral"}, failovertest.WithEntraID(identity), failovertest.WithKey("never-sent"))
	keyed := startRegions(t, []string{"westus"})
	t.Setenv("AZURE_OPENAI_AUTH", "entra") // every region without a key
	t.Setenv("AZURE_OPENAI_ENDPOINT_1", entra[0].URL)
	t.Setenv("AZURE_OPENAI_REGION_1", "eastus")
	t.Setenv("AZURE_OPENAI_ENDPOINT_2", entra[1].URL)
	t.Setenv("AZURE_OPENAI_REGION_2", "swedencentral")
	t.Setenv("AZURE_OPENAI_ENDPOINT_3", keyed[0].URL)
	t.Setenv("AZURE_OPENAI_API_KEY_3", keyed[0].Key)
	t.Setenv("AZURE_OPENAI_REGION_3", "westus")
	t.Setenv("AZURE_OPENAI_PRIORITY_3", "1")
	t.Setenv("FAILOVER_STRATEGY", "round-robin")
	t.Setenv("FAILOVER_MODEL", "gpt-4o")
	client, err := failover.NewFromEnv()
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)

	// Many requests at once, then more: one token serves them all, in both regions.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 20 {
		wg.Go(func() {
			_, err := client.ChatCompletion(t.Context(), hello())
			errs <- err
		})
	}
	wg.Wait()
	for range 20 {
		_, err := client.ChatCompletion(t.Context(), hello())
		errs <- err
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	requests := identity.Requests()
	require.Len(t, requests, 1, "one token fetch serves 40 requests and both regions")
	assert.Equal(t, "https://cognitiveservices.azure.com", requests[0].Resource, "the scope asked for")
	assert.True(t, requests[0].HeaderOK, "the request carried IDENTITY_HEADER")
	token := requests[0].Token
	calls := append(entra[0].Calls(), entra[1].Calls()...)
	assert.Len(t, calls, 40, "the token regions served every request; the key region none")
	assert.NotEmpty(t, entra[0].Calls())
	assert.NotEmpty(t, entra[1].Calls())
	assert.Zero(t, keyed[0].Requests())
	for _, c := range calls {
		assert.Equal(t, "Bearer "+token, c.Header.Get("Authorization"))
		assert.Empty(t, c.Header.Values("Api-Key"), "no key travels with a token")
		assert.True(t, c.Authorized)
	}
	shown := fmt.Sprintf("%v %+v", client, client.Health())
	assert.NotContains(t, shown, token)
}

// TestEntraMixedWithKeys: a region with a key next to one with a token, each sending its own credential only.
func TestEntraMixedWithKeys(t *testing.T) {
	identity := failovertest.NewIdentity(nil)
	t.Cleanup(identity.Close)
	useIdentity(t, identity)
	entra := failovertest.NewRegion("eastus", failovertest.WithEntraID(identity), failovertest.WithKey("never-sent"))
	t.Cleanup(entra.Close)
	keyed := startRegions(t, []string{"westus"})
	cred := newManagedIdentity(t, nil, "")
	regions := []failover.Region{
		{Name: "westus", Endpoint: keyed[0].URL, APIKey: keyed[0].Key},
		{Name: "eastus", Endpoint: entra.URL, Credential: cred},
	}
	client := newClient(t, regions, failover.WithStrategy(failover.StrategyRoundRobin))
	for range 4 {
		_, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
	}
	require.Len(t, identity.Tokens(), 1)
	for _, c := range entra.Calls() {
		assert.Equal(t, "Bearer "+identity.Tokens()[0], c.Header.Get("Authorization"))
		assert.Empty(t, c.Header.Values("Api-Key"))
	}
	for _, c := range keyed[0].Calls() {
		assert.Equal(t, keyed[0].Key, c.Header.Get("Api-Key"))
		assert.Empty(t, c.Header.Values("Authorization"), "no token travels with a key")
	}
	assert.Equal(t, 2, entra.Requests())
	assert.Equal(t, 2, keyed[0].Requests())
	assert.Contains(t, fmt.Sprintf("%v", regions[1]), "Credential:*azidentity.ManagedIdentityCredential")
}

// entraBubble is a token region (eastus) and a key region (westus) on an in-memory network, with a managed
// identity credential for eastus that reaches identity through azidentity itself, for tests in a synctest bubble:
// azidentity, MSAL, the fakes and the client all see the bubble's fake time.
type entraBubble struct {
	identity *failovertest.Identity
	east     *failovertest.Server
	west     *failovertest.Server
	client   *failover.Client
	log      bytes.Buffer // the client's log, at debug level
}

func newEntraBubble(t *testing.T, opts ...failover.Option) *entraBubble {
	t.Helper()
	network := failovertest.NewNetwork()
	t.Cleanup(network.Close)
	b := &entraBubble{identity: failovertest.NewIdentity(network)}
	t.Cleanup(b.identity.Close)
	useIdentity(t, b.identity)
	b.east = failovertest.NewRegion("eastus", failovertest.OnNetwork(network), failovertest.WithEntraID(b.identity),
		failovertest.WithKey("never-sent"))
	b.west = failovertest.NewRegion("westus", failovertest.OnNetwork(network))
	t.Cleanup(b.east.Close)
	t.Cleanup(b.west.Close)
	cred := newManagedIdentity(t, network.Client(), fmt.Sprintf("client-%x", rand.Uint64()))
	regions := []failover.Region{
		{Name: "eastus", Endpoint: b.east.URL, Credential: cred},
		{Name: "westus", Endpoint: b.west.URL, APIKey: b.west.Key},
	}
	logger := slog.New(slog.NewTextHandler(&b.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.client = newClient(t, regions, append([]failover.Option{failover.WithHTTPClient(network.Client()),
		failover.WithMaxWait(0), failover.WithLogger(logger)}, opts...)...)
	return b
}

// ask makes one request and returns the region that served it.
func (b *entraBubble) ask(t *testing.T) (string, []failover.Attempt) {
	t.Helper()
	var rec recorder
	_, err := b.client.ChatCompletion(rec.context(t.Context()), hello())
	require.NoError(t, err)
	return rec.last().Region, rec.attempts
}

func lastAuthorization(s *failovertest.Server) string {
	calls := s.Calls()
	return calls[len(calls)-1].Header.Get("Authorization")
}

func TestEntraTokenRefreshedBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newEntraBubble(t)
		b.identity.SetTokenLifetime(time.Hour) // as Entra ID issues them; MSAL caches it too
		for range 10 {
			served, _ := b.ask(t)
			require.Equal(t, "eastus", served)
		}
		require.Len(t, b.identity.Tokens(), 1, "one fetch for ten requests")

		time.Sleep(54 * time.Minute)
		b.ask(t)
		require.Len(t, b.identity.Tokens(), 1, "six minutes before expiry the token is kept")

		time.Sleep(2 * time.Minute)
		served, _ := b.ask(t)
		assert.Equal(t, "eastus", served)
		tokens := b.identity.Tokens()
		require.Len(t, tokens, 2, "four minutes before expiry the token is replaced")
		assert.Equal(t, "Bearer "+tokens[1], lastAuthorization(b.east), "the new token is sent at once")

		time.Sleep(56 * time.Minute)
		b.ask(t)
		assert.Len(t, b.identity.Tokens(), 3, "and again an hour later")
		for _, c := range b.east.Calls() {
			assert.True(t, c.Authorized, "no request went out with an expired token")
		}
		assert.Zero(t, b.west.Requests())
	})
}

func TestEntraTokenRefusedFailsOverAndRestsTheRegion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newEntraBubble(t)
		b.identity.Fail(http.StatusBadRequest) // App Service's answer when the identity is not assigned

		served, attempts := b.ask(t)
		assert.Equal(t, "westus", served, "the key region serves")
		require.Len(t, attempts, 2)
		a := attempts[0]
		assert.Equal(t, "eastus", a.Region)
		assert.Equal(t, failover.OutcomeFailedOver, a.Outcome)
		assert.Zero(t, a.Status, "nothing was sent")
		assert.ErrorIs(t, a.Err, failover.ErrCredential)
		var credErr *failover.CredentialError
		require.ErrorAs(t, a.Err, &credErr)
		assert.Equal(t, "eastus", credErr.Region)
		var authErr *azidentity.AuthenticationFailedError
		require.ErrorAs(t, a.Err, &authErr, "azidentity's error is reachable")
		assert.Equal(t, http.StatusBadRequest, authErr.RawResponse.StatusCode)
		assert.Equal(t, failover.DefaultFaultRest, a.Rest, "a credential that cannot work here is a fault")
		assert.Zero(t, b.east.Requests())

		h := b.client.Health()[0]
		assert.Equal(t, failover.StateResting, h.State, "the whole region rests")
		assert.Contains(t, h.Reason, "no Entra ID token")
		assert.Contains(t, b.log.String(), "level=ERROR", "a fault is logged at Error")

		served, _ = b.ask(t)
		assert.Equal(t, "westus", served)
		assert.Len(t, b.identity.Requests(), 1, "a resting region's credential is not asked again")

		b.identity.Fail(0)
		time.Sleep(failover.DefaultFaultRest)
		served, _ = b.ask(t)
		assert.Equal(t, "eastus", served, "after the rest, the probe gets a token and serves")
		assert.Equal(t, failover.StateServing, b.client.Health()[0].State)
	})
}

func TestEntraTokenServiceDownFailsOverBriefly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newEntraBubble(t, fixedBackoff(10*time.Second))
		b.identity.Fail(http.StatusServiceUnavailable)

		served, attempts := b.ask(t)
		assert.Equal(t, "westus", served)
		assert.ErrorIs(t, attempts[0].Err, failover.ErrCredential)
		assert.Equal(t, 10*time.Second, attempts[0].Rest, "a token service that is down is transient: the backoff")
		assert.NotContains(t, b.log.String(), "level=ERROR")

		b.identity.Fail(0)
		time.Sleep(10 * time.Second)
		served, _ = b.ask(t)
		assert.Equal(t, "eastus", served)
	})
}

func TestEntraSlowTokenIsBoundByTheAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newEntraBubble(t, failover.WithAttemptTimeout(2*time.Second))
		b.identity.SetDelay(time.Minute)

		start := time.Now()
		served, attempts := b.ask(t)
		assert.Equal(t, "westus", served)
		assert.Equal(t, 2*time.Second, time.Since(start), "the token fetch ran under the attempt timeout")
		assert.ErrorIs(t, attempts[0].Err, failover.ErrCredential)
		assert.ErrorIs(t, attempts[0].Err, failover.ErrAttemptTimeout)
		assert.Equal(t, failover.StateResting, b.client.Health()[0].State, "the region rests, not one model")
	})
}

// TestEntraSlowRefreshKeepsTheValidToken: when the identity service is too slow to refresh a token that is still
// valid, the request that tried gives up, but the token goes on serving: the region is not taken out.
func TestEntraSlowRefreshKeepsTheValidToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newEntraBubble(t, failover.WithAttemptTimeout(2*time.Second), fixedBackoff(time.Second))
		b.identity.SetTokenLifetime(time.Hour)
		served, _ := b.ask(t)
		require.Equal(t, "eastus", served)

		time.Sleep(56 * time.Minute) // the token is due for refresh, and still valid for 4 minutes
		b.identity.SetDelay(time.Minute)
		served, attempts := b.ask(t)
		assert.Equal(t, "westus", served, "the request that waited for the refresh ran out of time")
		assert.ErrorIs(t, attempts[0].Err, failover.ErrAttemptTimeout)
		assert.Equal(t, failover.StateServing, b.client.Health()[0].State, "the region as a whole does not rest")

		time.Sleep(time.Second)
		served, _ = b.ask(t)
		assert.Equal(t, "eastus", served, "the valid token serves while the refresh waits")
		assert.Equal(t, "Bearer "+b.identity.Tokens()[0], lastAuthorization(b.east))
		assert.Contains(t, b.log.String(), "refreshing the Entra ID token failed")
	})
}

func TestEntraRevokedRoleFailsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newEntraBubble(t)
		served, _ := b.ask(t)
		require.Equal(t, "eastus", served)

		b.identity.Revoke(b.identity.Tokens()[0]) // the role was removed in this region
		served, attempts := b.ask(t)
		assert.Equal(t, "westus", served, "a 401 after a token was sent fails over")
		assert.Equal(t, http.StatusUnauthorized, attempts[0].Status)
		var reqErr *openai.RequestError
		assert.ErrorAs(t, attempts[0].Err, &reqErr, "Azure's token 401 is not in the error shape")
		assert.Equal(t, failover.DefaultFaultRest, attempts[0].Rest)
		assert.Equal(t, failover.StateResting, b.client.Health()[0].State)
	})
}

// TestEntraExhaustedErrorReachesTheCredentialError: with every region out, the caller still reaches azidentity's
// error through the *ExhaustedError.
func TestEntraExhaustedErrorReachesTheCredentialError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newEntraBubble(t)
		b.identity.Fail(http.StatusBadRequest)
		b.west.SetDefault(failovertest.InternalError())
		_, err := b.client.ChatCompletion(t.Context(), hello())
		require.ErrorIs(t, err, failover.ErrExhausted)
		assert.ErrorIs(t, err, failover.ErrCredential)
		var authErr *azidentity.AuthenticationFailedError
		assert.True(t, errors.As(err, &authErr))
	})
}

// TestEntraNilCredentialIsAConfigError: what a failed azidentity constructor returns, ignored, is refused by New
// instead of panicking at the first request.
func TestEntraNilCredentialIsAConfigError(t *testing.T) {
	var cred *azidentity.DefaultAzureCredential
	_, err := failover.New([]failover.Region{{Endpoint: "https://one.openai.azure.com", Credential: cred}})
	var cfgErr *failover.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	assert.Equal(t, "regions[0].Credential", cfgErr.Field)
	assert.Contains(t, cfgErr.Problem, "nil *azidentity.DefaultAzureCredential")
}

// TestEntraSharedTokenErrorIsSafeToPrint: the requests that waited for one failed fetch share its error, and
// print it at once (hooks, logs); azidentity's own Error method is not safe for that, so -race checks ours is.
func TestEntraSharedTokenErrorIsSafeToPrint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var printed sync.Map
		b := newEntraBubble(t, failover.WithOnAttempt(func(_ context.Context, a failover.Attempt) {
			if a.Err != nil {
				printed.Store(a.Err.Error()+a.String(), true)
			}
		}))
		b.identity.Fail(http.StatusBadRequest)
		b.identity.SetDelay(100 * time.Millisecond) // so that the requests gather behind one fetch
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				_, err := b.client.ChatCompletion(t.Context(), hello())
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		assert.Len(t, b.identity.Requests(), 1, "one fetch for twenty requests")
		n := 0
		printed.Range(func(k, _ any) bool {
			n++
			assert.Contains(t, k, "no Entra ID token")
			return true
		})
		assert.Positive(t, n)
	})
}
