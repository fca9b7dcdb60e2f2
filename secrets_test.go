package failover_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
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

func (s *secretScan) check(t *testing.T) {
	t.Helper()
	require.NotZero(t, s.Len(), "the scan saw some output")
	text := s.String()
	for _, secret := range secrets {
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
