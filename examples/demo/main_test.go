package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/aoai-failover/failover/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemoScenarios(t *testing.T) {
	cases := map[string][]string{
		"throttled": {"failed  eastus: 429 failed over", "resting 30s", "served  westeurope: 200 served", `reply: "Hello from westeurope."`,
			"passed over eastus for gpt-4o: resting for 30s more (429 rate limited)"},
		"outage": {"failed  eastus: failed over", "failed  westeurope: 503 failed over", `reply: "Hello from swedencentral."`,
			"passed over eastus: resting", "(no answer)", "passed over westeurope for gpt-4o: resting"},
		"fallback": {"failed  westeurope: 500", "served  openai: 200 served", `reply: "Hello from openai."`},
		"exhausted": {"failed  westeurope: 404", "error: failover: no region could serve the request for model \"gpt-4o\" (3 attempts",
			"passed over westeurope for gpt-4o: missing for 1h0m0s more", "(0 attempts, 3 passed over, retry at"},
		"refused": {"stopped eastus: 400 returned", "error: error, status code: 400"},
		"replicas": {"sharing through a store in memory", "request 1, on replica A", "request 2, on replica B",
			"requests each backend received: eastus 1, westeurope 2, openai 0"},
	}
	// Steering and hedging fail no attempt: the second request goes to westeurope before eastus answers 429,
	// or is raced against it.
	quiet := map[string][]string{
		"steering": {"served  eastus: 200 served", "(12 tokens left this minute)", "served  westeurope: 200 served",
			"requests each backend received: eastus 1, westeurope 1, openai 0"},
		"hedging": {"lost    eastus: lost after", "served  westeurope: 200 hedge served",
			"requests each backend received: eastus 2, westeurope 2, openai 0"},
	}
	for scenario, wants := range quiet {
		t.Run(scenario, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(t.Context(), &out, []string{"-scenario", scenario, "-requests", "2"}))
			for _, want := range wants {
				assert.Contains(t, out.String(), want)
			}
			assert.NotContains(t, out.String(), "failed ")
			assert.NotContains(t, out.String(), " 429 ")
		})
	}
	for scenario, wants := range cases {
		t.Run(scenario, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(t.Context(), &out, []string{"-scenario", scenario, "-requests", "2"}))
			for _, want := range wants {
				assert.Contains(t, out.String(), want)
			}
			assert.Equal(t, 2, strings.Count(out.String(), "\nrequest "))
			if scenario != "refused" {
				assert.Equal(t, 1, strings.Count(out.String(), "failed  eastus"), "the second request passes eastus over")
			}
			if scenario == "refused" {
				assert.NotContains(t, out.String(), "westeurope: 200", "a refused prompt is not sent elsewhere")
			}
		})
	}
}

// TestDemoReplicasThroughRedis runs the replicas scenario on a redis-server of its own.
func TestDemoReplicasThroughRedis(t *testing.T) {
	srv := redistest.Own(t)
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out, []string{"-scenario", "replicas", "-requests", "4", "-redis", srv.URL()}))
	assert.Contains(t, out.String(), "sharing through Redis")
	assert.Contains(t, out.String(), "requests each backend received: eastus 1, westeurope 4, openai 0")
	assert.Contains(t, out.String(), "request 4, on replica B: \"Name one colour.\"\n  passed over eastus for gpt-4o: resting")
}

func TestDemoRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	assert.ErrorContains(t, run(t.Context(), &out, []string{"-scenario", "nope"}), `"nope" is not one of`)
	assert.ErrorContains(t, run(t.Context(), &out, []string{"-requests", "0"}), "expected 1 to 100")
}

func TestDemoWithEnvNamesWhatIsMissing(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AZURE_OPENAI_") || strings.HasPrefix(k, "OPENAI_") {
			t.Setenv(k, "")
		}
	}
	t.Chdir(t.TempDir())
	var out bytes.Buffer
	assert.ErrorContains(t, run(t.Context(), &out, []string{"-env"}), "AZURE_OPENAI_ENDPOINT_1")
}
