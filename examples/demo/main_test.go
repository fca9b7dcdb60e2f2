package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemoScenarios(t *testing.T) {
	cases := map[string][]string{
		"throttled": {"skipped eastus: 429 failed over", "served  westeurope: 200 served", `reply: "Hello from westeurope."`},
		"outage":    {"skipped eastus: failed over", "skipped westeurope: 503 failed over", `reply: "Hello from swedencentral."`},
		"fallback":  {"skipped westeurope: 500", "served  openai: 200 served", `reply: "Hello from openai."`},
		"exhausted": {"skipped westeurope: 404", "error: failover: no region could serve the request (3 attempts)"},
		"refused":   {"stopped eastus: 400 returned", "error: error, status code: 400"},
	}
	for scenario, wants := range cases {
		t.Run(scenario, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(t.Context(), &out, []string{"-scenario", scenario, "-requests", "2"}))
			for _, want := range wants {
				assert.Contains(t, out.String(), want)
			}
			assert.Equal(t, 2, strings.Count(out.String(), "\nrequest "))
			if scenario == "refused" {
				assert.NotContains(t, out.String(), "westeurope: 200", "a refused prompt is not sent elsewhere")
			}
		})
	}
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
