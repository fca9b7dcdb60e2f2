package failover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// configCredential is a fake Entra ID credential. With an identity it fetches real tokens from that fake identity
// endpoint (which fake regions started with WithEntraID accept); without one it gives none. Its secret field stands
// for the client secret a real credential holds: it must never be shown.
type configCredential struct {
	identity *failovertest.Identity
	secret   string

	mu     sync.Mutex
	scopes [][]string // the scopes of every GetToken call
}

func (c *configCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	c.scopes = append(c.scopes, opts.Scopes)
	c.mu.Unlock()
	if c.identity == nil {
		return azcore.AccessToken{}, errors.New("configCredential has no identity")
	}
	// The App Service identity protocol, as azidentity speaks it: the resource is the scope without /.default.
	q := url.Values{"api-version": {"2019-08-01"}, "resource": {strings.TrimSuffix(failover.EntraScope, "/.default")}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.identity.URL+"?"+q.Encode(), nil)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	req.Header.Set("X-IDENTITY-HEADER", c.identity.Header)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		ExpiresOn   string `json:"expires_on"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return azcore.AccessToken{}, err
	}
	expires, err := strconv.ParseInt(body.ExpiresOn, 10, 64)
	if resp.StatusCode != http.StatusOK || err != nil {
		return azcore.AccessToken{}, fmt.Errorf("identity endpoint answered %d", resp.StatusCode)
	}
	return azcore.AccessToken{Token: body.AccessToken, ExpiresOn: time.Unix(expires, 0)}, nil
}

func (c *configCredential) calls() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.scopes...)
}

// A secret-looking value for each place a secret might be pasted.
const (
	authCfgKey          = "azure-key-AUTHCFG-7d1c9e5b3a0f2468ace1"
	authCfgPasted       = "pasted-SECRET-in-auth-0f1e2d3c4b5a6978"
	authCfgClientSecret = "client-secret-DELTA-8a7b6c5d4e3f2a1b0c9d"
)

// requireAuthConfigError finds the *ConfigError for field in err, checks that its problem mentions each of mentions
// and that the whole message holds none of the secrets, and returns it.
func requireAuthConfigError(t *testing.T, err error, field string, mentions ...string) *failover.ConfigError {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, failover.ErrConfig)
	for _, secret := range []string{authCfgKey, authCfgPasted, authCfgClientSecret} {
		assert.NotContains(t, err.Error(), secret)
	}
	var fields []string
	for _, e := range authConfigErrors(err) {
		if e.Field == field {
			for _, m := range mentions {
				assert.Contains(t, e.Problem, m)
			}
			return e
		}
		fields = append(fields, e.Field)
	}
	t.Fatalf("no error for %s; errors for %v: %v", field, fields, err)
	return nil
}

// authConfigErrors lists the *ConfigErrors joined in err.
func authConfigErrors(err error) []*failover.ConfigError {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var all []*failover.ConfigError
		for _, e := range joined.Unwrap() {
			all = append(all, authConfigErrors(e)...)
		}
		return all
	}
	var cfgErr *failover.ConfigError
	if errors.As(err, &cfgErr) {
		return []*failover.ConfigError{cfgErr}
	}
	return nil
}

// setenvPairs sets variables for the test, name and value in turn.
func setenvPairs(t *testing.T, kv ...string) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
}

// newFromEnvWith is NewFromEnv with a fake Entra ID credential, so that no DefaultAzureCredential is
// built; the client, if any, has its idle connections closed when the test ends.
func newFromEnvWith(t *testing.T, cred azcore.TokenCredential, opts ...failover.Option) (*failover.Client, error) {
	t.Helper()
	c, err := failover.NewFromEnv(append([]failover.Option{failover.WithEntraCredential(cred)}, opts...)...)
	if c != nil {
		t.Cleanup(c.CloseIdleConnections)
	}
	return c, err
}

func TestAuthEntraWithAKeyIsAnError(t *testing.T) {
	isolateEnv(t)
	setenvPairs(t, "AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1", authCfgKey,
		"AZURE_OPENAI_ENDPOINT_2", "https://two.openai.azure.com", "AZURE_OPENAI_API_KEY_2", authCfgKey,
		"AZURE_OPENAI_AUTH_2", "entra")
	c, err := newFromEnvWith(t, &configCredential{})
	assert.Nil(t, c)
	requireAuthConfigError(t, err, "AZURE_OPENAI_AUTH_2", "AZURE_OPENAI_API_KEY_2", "one of the two")
	assert.Len(t, authConfigErrors(err), 1, "region 1 is fine: %v", err)
}

func TestAuthNeitherKeyNorEntraIsAnError(t *testing.T) {
	isolateEnv(t)
	setenvPairs(t, "AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1", authCfgKey,
		"AZURE_OPENAI_ENDPOINT_3", "https://three.openai.azure.com")
	c, err := newFromEnvWith(t, &configCredential{})
	assert.Nil(t, c)
	requireAuthConfigError(t, err, "AZURE_OPENAI_API_KEY_3", "no API key", "AZURE_OPENAI_AUTH_3=entra")
}

func TestAuthUnknownModeIsAnError(t *testing.T) {
	for _, name := range []string{"AZURE_OPENAI_AUTH_1", "AZURE_OPENAI_AUTH"} {
		t.Run(name, func(t *testing.T) {
			isolateEnv(t)
			setenvPairs(t, "AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1", authCfgKey,
				name, authCfgPasted)
			c, err := newFromEnvWith(t, &configCredential{})
			assert.Nil(t, c)
			e := requireAuthConfigError(t, err, name, "not an authentication mode", "key", "entra")
			assert.NotContains(t, e.Problem, authCfgPasted[:12], "the value is not quoted, not even in part")
		})
	}
}

func TestAuthModeIsCaseInsensitive(t *testing.T) {
	identity := failovertest.NewIdentity(nil)
	t.Cleanup(identity.Close)
	for _, mode := range []string{"ENTRA", "Entra", " entra "} {
		t.Run(mode, func(t *testing.T) {
			isolateEnv(t)
			region := failovertest.NewRegion("eastus", failovertest.WithEntraID(identity), failovertest.WithKey("never-sent"))
			t.Cleanup(region.Close)
			setenvPairs(t, "AZURE_OPENAI_ENDPOINT_1", region.URL, "AZURE_OPENAI_AUTH_1", mode, "FAILOVER_MODEL", "gpt-4o")
			c, err := newFromEnvWith(t, &configCredential{identity: identity})
			require.NoError(t, err)
			_, err = c.ChatCompletion(t.Context(), hello())
			require.NoError(t, err)
			assert.True(t, region.Calls()[0].Authorized, "the region took the token")
		})
	}
	t.Run("KEY", func(t *testing.T) {
		isolateEnv(t)
		setenvPairs(t, "AZURE_OPENAI_AUTH", "entra", "AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com", "AZURE_OPENAI_AUTH_1", "KEY")
		_, err := newFromEnvWith(t, &configCredential{})
		requireAuthConfigError(t, err, "AZURE_OPENAI_API_KEY_1", "no API key")
	})
}

// TestAuthGlobalEntra: AZURE_OPENAI_AUTH=entra makes every region without a key use the Entra ID credential;
// regions with a key keep it.
func TestAuthGlobalEntra(t *testing.T) {
	isolateEnv(t)
	identity := failovertest.NewIdentity(nil)
	t.Cleanup(identity.Close)
	entra := failovertest.NewRegion("eastus", failovertest.WithEntraID(identity), failovertest.WithKey("never-sent"))
	t.Cleanup(entra.Close)
	keyed := failovertest.NewRegion("westus")
	t.Cleanup(keyed.Close)
	setenvPairs(t, "AZURE_OPENAI_AUTH", "entra",
		"AZURE_OPENAI_ENDPOINT_1", entra.URL, "AZURE_OPENAI_REGION_1", "eastus",
		"AZURE_OPENAI_ENDPOINT_2", keyed.URL, "AZURE_OPENAI_REGION_2", "westus", "AZURE_OPENAI_API_KEY_2", keyed.Key,
		"FAILOVER_STRATEGY", "round-robin", "FAILOVER_MODEL", "gpt-4o")
	cred := &configCredential{identity: identity}
	c, err := newFromEnvWith(t, cred)
	require.NoError(t, err)
	assert.Equal(t, []string{"eastus", "westus"}, c.Regions())
	for range 4 {
		_, err := c.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
	}

	tokens := identity.Tokens()
	require.Len(t, tokens, 1, "one token serves every request")
	require.Len(t, entra.Calls(), 2)
	for _, call := range entra.Calls() {
		assert.Equal(t, "Bearer "+tokens[0], call.Header.Get("Authorization"))
		assert.Empty(t, call.Header.Values("Api-Key"))
	}
	require.Len(t, keyed.Calls(), 2)
	for _, call := range keyed.Calls() {
		assert.Equal(t, keyed.Key, call.Header.Get("Api-Key"), "a region with a key keeps it")
		assert.Empty(t, call.Header.Values("Authorization"))
	}
	assert.NotContains(t, fmt.Sprintf("%v %+v %#v", c, c, c), tokens[0])
}

func TestAuthKeyOverridesGlobalEntra(t *testing.T) {
	isolateEnv(t)
	setenvPairs(t, "AZURE_OPENAI_AUTH", "entra",
		"AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com",
		"AZURE_OPENAI_ENDPOINT_2", "https://two.openai.azure.com", "AZURE_OPENAI_AUTH_2", "key")
	c, err := newFromEnvWith(t, &configCredential{})
	assert.Nil(t, c)
	requireAuthConfigError(t, err, "AZURE_OPENAI_API_KEY_2", "no API key")
	assert.Len(t, authConfigErrors(err), 1, "region 1 takes the global entra: %v", err)

	t.Setenv("AZURE_OPENAI_API_KEY_2", authCfgKey)
	c, err = newFromEnvWith(t, &configCredential{})
	require.NoError(t, err)
	assert.Equal(t, []string{"one.openai.azure.com", "two.openai.azure.com"}, c.Regions())
}

func TestAuthEntraWithoutEndpoint(t *testing.T) {
	for _, env := range [][]string{
		{"AZURE_OPENAI_AUTH_1", "entra"},
		{"AZURE_OPENAI_AUTH", "entra", "AZURE_OPENAI_REGION_1", "eastus"},
	} {
		t.Run(env[0], func(t *testing.T) {
			isolateEnv(t)
			setenvPairs(t, env...)
			c, err := newFromEnvWith(t, &configCredential{})
			assert.Nil(t, c)
			requireAuthConfigError(t, err, "AZURE_OPENAI_ENDPOINT_1", "the region has an Entra ID credential but no endpoint")
		})
	}
}

func TestAuthGoValues(t *testing.T) {
	const endpoint = "https://eastus.openai.azure.com"
	t.Run("key and credential", func(t *testing.T) {
		c, err := failover.New([]failover.Region{{Endpoint: endpoint, APIKey: authCfgKey, Credential: &configCredential{secret: authCfgClientSecret}}})
		assert.Nil(t, c)
		requireAuthConfigError(t, err, "regions[0].Credential", "APIKey", "one of the two")
	})
	t.Run("neither", func(t *testing.T) {
		c, err := failover.New([]failover.Region{{Endpoint: endpoint}})
		assert.Nil(t, c)
		requireAuthConfigError(t, err, "regions[0].APIKey", "no API key", "Credential")
	})
	t.Run("credential without endpoint", func(t *testing.T) {
		c, err := failover.New([]failover.Region{{Credential: &configCredential{secret: authCfgClientSecret}}})
		assert.Nil(t, c)
		requireAuthConfigError(t, err, "regions[0].Endpoint", "Entra ID credential but no endpoint")
	})
	t.Run("credential", func(t *testing.T) {
		identity := failovertest.NewIdentity(nil)
		t.Cleanup(identity.Close)
		region := failovertest.NewRegion("eastus", failovertest.WithEntraID(identity), failovertest.WithKey("never-sent"))
		t.Cleanup(region.Close)
		own := &configCredential{identity: identity}
		option := &configCredential{identity: identity}
		c := newClient(t, []failover.Region{{Name: "eastus", Endpoint: region.URL, Credential: own}},
			failover.WithEntraCredential(option))
		_, err := c.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		assert.Equal(t, [][]string{{failover.EntraScope}}, own.calls(), "the region's own credential")
		assert.Empty(t, option.calls(), "WithEntraCredential is for regions read from the environment")
		assert.True(t, region.Calls()[0].Authorized)
	})
}

// TestWithEntraCredentialServesEnvRegions: the credential given to WithEntraCredential, not a
// DefaultAzureCredential, gives the tokens of regions read with AZURE_OPENAI_AUTH_N=entra. No identity variable
// points azidentity at the identity endpoint, so only the given credential can get a token the region accepts.
func TestWithEntraCredentialServesEnvRegions(t *testing.T) {
	isolateEnv(t)
	clearAzureIdentityEnv(t)
	identity := failovertest.NewIdentity(nil)
	t.Cleanup(identity.Close)
	region := failovertest.NewRegion("eastus", failovertest.WithEntraID(identity), failovertest.WithKey("never-sent"))
	t.Cleanup(region.Close)
	setenvPairs(t, "AZURE_OPENAI_ENDPOINT_1", region.URL, "AZURE_OPENAI_AUTH_1", "entra", "FAILOVER_MODEL", "gpt-4o")
	cred := &configCredential{identity: identity}
	c, err := newFromEnvWith(t, cred)
	require.NoError(t, err)
	for range 3 {
		_, err := c.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
	}
	assert.Equal(t, [][]string{{failover.EntraScope}}, cred.calls(), "one token, for Azure AI services")
	require.Len(t, identity.Tokens(), 1)
	require.Len(t, region.Calls(), 3)
	for _, call := range region.Calls() {
		assert.Equal(t, "Bearer "+identity.Tokens()[0], call.Header.Get("Authorization"))
		assert.True(t, call.Authorized)
	}
}

// TestRegionShowsOnlyTheCredentialsType: formatting, JSON and slog show which credential a region has by its type,
// never by its contents.
func TestRegionShowsOnlyTheCredentialsType(t *testing.T) {
	r := failover.Region{Name: "eastus", Endpoint: "https://eastus.openai.azure.com", Credential: &configCredential{secret: authCfgClientSecret}}
	const typ = "*failover_test.configCredential"
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		shown := fmt.Sprintf(verb, r)
		assert.Contains(t, shown, "Credential:"+typ, verb)
		assert.NotContains(t, shown, authCfgClientSecret, verb)
		assert.Contains(t, shown, "APIKey: ", "%s: no key to redact", verb)
	}
	data, err := json.Marshal(r)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"credential":"`+typ+`"`)
	assert.NotContains(t, string(data), "api_key")
	var log bytes.Buffer
	slog.New(slog.NewTextHandler(&log, nil)).Info("region", "region", r)
	assert.Contains(t, log.String(), "region.credential="+typ)
	slog.New(slog.NewJSONHandler(&log, nil)).Info("region", "region", r)
	assert.Contains(t, log.String(), `"credential":"`+typ+`"`)
	assert.NotContains(t, log.String(), authCfgClientSecret)

	keyed := failover.Region{Name: "westus", Endpoint: "https://westus.openai.azure.com", APIKey: authCfgKey}
	shown := fmt.Sprintf("%v %+v %#v", keyed, keyed, keyed)
	assert.Contains(t, shown, "Credential: ", "no credential shown for a region with a key")
	assert.NotContains(t, shown, authCfgKey)
}

// clearAzureIdentityEnv unsets, for the test, every variable azidentity reads to find a credential, so that
// DefaultAzureCredential finds nothing configured.
func clearAzureIdentityEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		for _, prefix := range []string{"AZURE_", "IDENTITY_", "MSI_", "IMDS_"} {
			if strings.HasPrefix(k, prefix) {
				t.Setenv(k, "") // restores the variable when the test ends
				require.NoError(t, os.Unsetenv(k))
			}
		}
	}
}

// TestEntraDefaultCredential: without WithEntraCredential, NewFromEnv builds a DefaultAzureCredential for
// AZURE_OPENAI_AUTH_1=entra, also with no identity configured (the credential looks for one only when asked for a
// token).
func TestEntraDefaultCredential(t *testing.T) {
	isolateEnv(t)
	clearAzureIdentityEnv(t)
	setenvPairs(t, "AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com", "AZURE_OPENAI_AUTH_1", "entra")
	c, err := failover.NewFromEnv()
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Equal(t, []string{"one.openai.azure.com"}, c.Regions())
}

// TestEntraDefaultCredentialThatCannotBeBuilt: when azidentity refuses to build a DefaultAzureCredential (here for
// an unknown AZURE_TOKEN_CREDENTIALS), the error names the variable that asked for Entra ID.
func TestEntraDefaultCredentialThatCannotBeBuilt(t *testing.T) {
	for _, auth := range []string{"AZURE_OPENAI_AUTH_1", "AZURE_OPENAI_AUTH"} {
		t.Run(auth, func(t *testing.T) {
			isolateEnv(t)
			clearAzureIdentityEnv(t)
			setenvPairs(t, "AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com", auth, "entra",
				"AZURE_TOKEN_CREDENTIALS", "no-such-credential")
			c, err := failover.NewFromEnv()
			assert.Nil(t, c)
			requireAuthConfigError(t, err, auth, "no Entra ID credential can be built", "AZURE_TOKEN_CREDENTIALS")

			c, err = newFromEnvWith(t, &configCredential{})
			require.NoError(t, err, "WithEntraCredential needs no DefaultAzureCredential")
			assert.Equal(t, []string{"one.openai.azure.com"}, c.Regions())
		})
	}
}
