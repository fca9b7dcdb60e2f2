package failover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Distinctive secrets, so that any appearance in output is found.
var secrets = []string{
	"azure-key-ALPHA-5f1e2d3c4b5a69788796a5b4",
	"azure-key-BRAVO-0a1b2c3d4e5f6a7b8c9d0e1f",
	"sk-openai-CHARLIE-9z8y7x6w5v4u3t2s1r0q",
}

// secretScan collects every piece of text a test produced and checks that no secret is in any of it.
type secretScan struct{ bytes.Buffer }

func (s *secretScan) add(format string, args ...any) { fmt.Fprintf(&s.Buffer, format+"\n", args...) }

// addAllVerbs formats v with every verb a caller might use, marshals it to JSON and logs it with both of slog's
// handlers.
func (s *secretScan) addAllVerbs(v any) {
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%T"} {
		s.add(verb, v)
	}
	if data, err := json.Marshal(v); err == nil {
		s.Write(append(data, '\n'))
	}
	slog.New(slog.NewJSONHandler(&s.Buffer, nil)).Info("value", "v", v)
	slog.New(slog.NewTextHandler(&s.Buffer, nil)).Info("value", "v", v)
}

// check fails t if any secret, or any of more, is in the output, whole or by its last 12 characters.
func (s *secretScan) check(t *testing.T, more ...string) {
	t.Helper()
	require.NotZero(t, s.Len(), "the scan saw some output")
	text := s.String()
	for _, secret := range append(more, secrets...) {
		for _, part := range []string{secret, secret[len(secret)-12:]} {
			if i := strings.Index(text, part); i >= 0 {
				t.Errorf("a secret leaked: …%s…", text[max(0, i-200):i])
			}
		}
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	var out secretScan
	logger := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	textLogger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))

	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		defer network.Close()
		// fleet accepts keys: ours (and answers as scripted), or others (and refuses ours as unauthorized).
		fleet := func(keys [3]string) []*failovertest.Server {
			servers := []*failovertest.Server{
				failovertest.NewRegion("eastus", failovertest.OnNetwork(network), failovertest.WithKey(keys[0])),
				failovertest.NewRegion("westus", failovertest.OnNetwork(network), failovertest.WithKey(keys[1])),
				failovertest.NewOpenAI(failovertest.OnNetwork(network), failovertest.WithKey(keys[2])),
			}
			for _, s := range servers {
				t.Cleanup(s.Close)
			}
			return servers
		}
		ours := fleet([3]string{secrets[0], secrets[1], secrets[2]})
		others := fleet([3]string{"server-side-1", "server-side-2", "server-side-3"})

		// echo answers with every secret in the body, as a misbehaving proxy might.
		echo := func(status int) failovertest.Reply {
			return failovertest.Reply{Status: status, Body: fmt.Sprintf(
				`{"error":{"code":"%d","message":"key %s, %s, %s is bad"}}`, status, secrets[0], secrets[1], secrets[2])}
		}
		scripts := [][]failovertest.Reply{
			{failovertest.RateLimited(time.Minute), failovertest.InternalError(), failovertest.Unavailable()},
			{echo(401), echo(429), echo(503)},
			{failovertest.Hang(), failovertest.Disconnect(), failovertest.Malformed()},
			{echo(400)}, // returned as it came, through go-openai's own error
			{{Status: 400, Body: "not json " + secrets[0]}},
		}

		for _, l := range []*slog.Logger{logger, textLogger} {
			for _, servers := range [][]*failovertest.Server{ours, others} {
				regions := []failover.Region{
					{Name: "eastus", Endpoint: servers[0].URL, APIKey: secrets[0], Deployments: map[string]string{"gpt-4o": "dep"}},
					{Name: "westus", Endpoint: servers[1].URL, APIKey: secrets[1]},
				}
				out.addAllVerbs(regions)
				out.addAllVerbs(regions[0])
				out.addAllVerbs(&regions[0])
				client, err := failover.New(regions, failover.WithOpenAIFallback(secrets[2], servers[2].URL),
					failover.WithLogger(l), failover.WithModel("gpt-4o"), failover.WithHTTPClient(network.Client()),
					failover.WithAttemptTimeout(time.Second), failover.WithMaxWait(0))
				require.NoError(t, err)
				out.addAllVerbs(client)
				for _, script := range scripts {
					time.Sleep(2 * time.Hour) // in the bubble: every rest of the previous script ends
					for i, reply := range script {
						servers[i].Script(reply)
					}
					var rec recorder
					_, err := client.ChatCompletion(rec.context(t.Context()), hello())
					require.Error(t, err)
					out.addAllVerbs(err)
					for _, a := range rec.attempts {
						out.addAllVerbs(a)
					}
					r := <-client.ChatCompletionAsync(t.Context(), hello())
					out.add("%v", r.Err)
				}
				client.CloseIdleConnections()
			}
		}
		assert.Equal(t, 401, others[0].Calls()[0].Status, "the other fleet refused our keys")
	})

	for _, bad := range [][]failover.Region{
		{{Endpoint: "http://example.com", APIKey: secrets[0]}},
		{{Endpoint: "https://user:" + secrets[0] + "@example.com", APIKey: secrets[1]}},
		{{Endpoint: "https://example.com", APIKey: secrets[0] + "\n"}},
		{{Endpoint: "", APIKey: secrets[0]}},
		{{Endpoint: "https://example.com/?key=" + secrets[1], APIKey: secrets[0]}},
	} {
		_, err := failover.New(bad, failover.WithOpenAIFallback(" "+secrets[2], ""))
		require.Error(t, err)
		out.addAllVerbs(err)
		out.addAllVerbs(bad)
	}
	assert.Contains(t, out.String(), `"level":"WARN"`, "the logger was used")
	assert.Contains(t, out.String(), "level=DEBUG", "debug lines were written")
	out.check(t)
}

// TestSecretScanCanFail shows the scan finds a secret when one is there, so a passing scan means something.
func TestSecretScanCanFail(t *testing.T) {
	var out secretScan
	out.add("header: %v", http.Header{"Api-Key": {secrets[0]}})
	fake := &testing.T{}
	out.check(fake)
	assert.True(t, fake.Failed())
}

// TestEntraSecretsNeverLeak drives the error paths of a token region next to a key region, with logging at debug
// level, and scans everything for the tokens, the identity endpoint's header secret and the key.
func TestEntraSecretsNeverLeak(t *testing.T) {
	var out secretScan
	var identity *failovertest.Identity
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		defer network.Close()
		identity = failovertest.NewIdentity(network)
		defer identity.Close()
		useIdentity(t, identity)
		east := failovertest.NewRegion("eastus", failovertest.OnNetwork(network), failovertest.WithEntraID(identity),
			failovertest.WithKey("never-sent"))
		defer east.Close()
		west := failovertest.NewRegion("westus", failovertest.OnNetwork(network), failovertest.WithKey(secrets[0]))
		defer west.Close()
		cred := newManagedIdentity(t, network.Client(), fmt.Sprintf("client-%x", rand.Uint64()))
		regions := []failover.Region{
			{Name: "eastus", Endpoint: east.URL, Credential: cred},
			{Name: "westus", Endpoint: west.URL, APIKey: secrets[0]},
		}
		out.addAllVerbs(regions)

		for _, handler := range []slog.Handler{
			slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}),
			slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}),
		} {
			client, err := failover.New(regions, failover.WithLogger(slog.New(handler)), failover.WithModel("gpt-4o"),
				failover.WithHTTPClient(network.Client()), failover.WithAttemptTimeout(time.Second), failover.WithMaxWait(0))
			require.NoError(t, err)
			out.addAllVerbs(client)
			// echo answers with the token the region was sent, and the key, in the body and a header.
			echo := func(status int) failovertest.Reply {
				tokens := identity.Tokens()
				token := tokens[len(tokens)-1]
				return failovertest.Reply{Status: status, Header: http.Header{"X-Echo": {token + " " + secrets[0]}},
					Body: fmt.Sprintf(`{"error":{"code":"%d","message":"token %s key %s"}}`, status, token, secrets[0])}
			}
			ask := func() {
				var rec recorder
				_, err := client.ChatCompletion(rec.context(t.Context()), hello())
				out.add("%v", err)
				if err != nil {
					out.addAllVerbs(err)
				}
				for _, a := range rec.attempts {
					out.addAllVerbs(a)
				}
				out.addAllVerbs(client.Health())
			}
			stream := func() {
				s, err := client.CreateChatCompletionStream(t.Context(), chatRequest())
				if err != nil {
					out.addAllVerbs(err)
					return
				}
				defer s.Close()
				_, err = failovertest.ReadStream(s)
				require.ErrorIs(t, err, failover.ErrStreamCut)
				out.addAllVerbs(err)
				out.addAllVerbs(s.Attempts())
			}
			steps := []func(){
				func() { ask() }, // east serves: a token is fetched
				func() { east.Script(echo(429)); west.Script(echo(500)); ask() },
				func() { east.Script(echo(401)); west.Script(echo(503)); ask() },
				func() { east.Script(failovertest.EntraUnauthorized()); west.Script(failovertest.Hang()); ask() },
				func() { identity.Fail(http.StatusBadRequest); west.Script(echo(429)); ask() },
				func() { identity.Fail(http.StatusServiceUnavailable); west.Script(failovertest.InternalError()); ask() },
				func() {
					identity.Fail(0)
					identity.SetDelay(time.Minute)
					west.Script(failovertest.Disconnect())
					ask()
				},
				func() {
					identity.SetDelay(0)
					east.Script(failovertest.StreamFailure(1)) // before content: fails over
					west.Script(failovertest.Reply{Content: "one two three four", StreamCutAfter: 2})
					stream()
				},
				func() { east.Script(echo(400)); ask() }, // returned as it came
				func() {
					// A stream that opens with an error event echoing the token, then a broken 2xx answer with
					// the secrets in a header.
					ask() // a fresh token for eastus
					tokens := identity.Tokens()
					token := tokens[len(tokens)-1]
					east.Script(failovertest.Reply{Header: http.Header{"Content-Type": {"text/event-stream"}, "X-Echo": {token}},
						Body: `data: {"error":{"code":"500","message":"you sent Bearer ` + token + `"}}` + "\n\n"})
					west.Script(failovertest.Reply{Header: http.Header{"X-Echo": {secrets[0]}}, Body: "not json"})
					_, err := client.CreateChatCompletionStream(t.Context(), chatRequest())
					require.ErrorIs(t, err, failover.ErrExhausted)
					assert.Contains(t, err.Error(), "you sent Bearer [REDACTED]", "the error event was scrubbed")
					out.addAllVerbs(err)
				},
			}
			for _, step := range steps {
				time.Sleep(2 * time.Hour) // every rest ends, and the token expires: each step fetches a new one
				step()
			}
			client.CloseIdleConnections()
		}
		require.GreaterOrEqual(t, len(identity.Tokens()), 8, "tokens were issued and sent")
	})

	// Configuration errors about token regions.
	for _, bad := range [][]failover.Region{
		{{Endpoint: "https://example.com", APIKey: secrets[1], Credential: secretCredential{clientSecret}}},
		{{Endpoint: "", Credential: secretCredential{clientSecret}}},
		{{Endpoint: "http://example.com", Credential: secretCredential{clientSecret}}},
	} {
		_, err := failover.New(bad)
		require.Error(t, err)
		out.addAllVerbs(err)
		out.addAllVerbs(bad)
	}
	assert.Contains(t, out.String(), "[REDACTED]", "an echoed secret was scrubbed")
	assert.Contains(t, out.String(), "no Entra ID token", "the token failures were seen")
	out.check(t, append(identity.Tokens(), identity.Header, clientSecret)...)
}

const clientSecret = "client-secret-FOXTROT-3e4f5a6b7c8d9e0f"

// secretCredential is a credential with a secret in a field, as a client-secret credential has.
type secretCredential struct{ secret string }

func (secretCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("not used")
}

// TestEscapedKeyInErrorBodyIsHidden: a region that echoes the key with a JSON escape ("\u006b" for its "k") in an
// error body must not have it shown: go-openai decodes the message, and the error would spell the key plainly.
func TestEscapedKeyInErrorBodyIsHidden(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	key := servers[0].Key
	servers[0].SetDefault(failovertest.Reply{Status: http.StatusInternalServerError,
		Body: `{"error":{"code":"500","message":"bad key \u00` + fmt.Sprintf("%x", key[0]) + key[1:] + `"}}`})
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	_, err := client.ChatCompletion(t.Context(), hello())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), key)
	assert.Contains(t, err.Error(), "bad key [REDACTED]", "the message is kept, without the key")
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr, "the caller still reaches the APIError")
	assert.NotContains(t, apiErr.Message, key)
}
