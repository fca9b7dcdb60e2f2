package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// childEnv makes the test binary run the command's main instead of the tests: TestDemoRedisDownPrintsNoGoRedisLog
// starts it so, to see all the command prints.
const childEnv = "DEMO_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main() // exits 1 itself on an error
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

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

// TestDemoScenarioAsArgument: the scenario may be named as the argument, as with -scenario, and flags may follow it.
func TestDemoScenarioAsArgument(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out, []string{"outage", "-requests", "2"}))
	for _, want := range []string{`scenario "outage"`, "1. eastus", "2. westeurope", "3. swedencentral",
		"failed  westeurope: 503 failed over", `reply: "Hello from swedencentral."`} {
		assert.Contains(t, out.String(), want)
	}
	assert.Equal(t, 2, strings.Count(out.String(), "\nrequest "))

	out.Reset()
	require.NoError(t, run(t.Context(), &out, []string{"-requests", "1", "-scenario", "fallback", "fallback"}), "both forms, agreeing")
	assert.Contains(t, out.String(), `scenario "fallback"`)
	assert.Contains(t, out.String(), `reply: "Hello from openai."`)
}

func TestDemoRejectsBadScenarioArguments(t *testing.T) {
	for name, tt := range map[string]struct {
		args []string
		want string
	}{
		"unknown":   {[]string{"nope"}, `scenario "nope" is not one of: `},
		"disagree":  {[]string{"-scenario", "outage", "fallback"}, `names scenario "fallback" and -scenario "outage"`},
		"two":       {[]string{"outage", "fallback"}, "name one scenario, not 2"},
		"after one": {[]string{"outage", "-requests", "2", "extra"}, "name one scenario, not 2"},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), &out, tt.args)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			for scenario := range scenarios {
				assert.Contains(t, err.Error(), scenario, "the error lists the scenarios")
			}
			assert.NotContains(t, out.String(), "request 1", "nothing was sent")
		})
	}
	var out bytes.Buffer
	assert.ErrorContains(t, run(t.Context(), &out, []string{"-env", "outage"}), `-env uses the real regions, and "outage"`)
}

// TestDemoUsageDescribesScenarios: -h shows both ways to name a scenario, and says what each one shows.
func TestDemoUsageDescribesScenarios(t *testing.T) {
	var out bytes.Buffer
	require.ErrorIs(t, run(t.Context(), &out, []string{"-h"}), flag.ErrHelp)
	usage := out.String()
	assert.Contains(t, usage, "go run ./examples/demo [flags] [scenario]")
	assert.Contains(t, usage, "go run ./examples/demo [flags] -scenario scenario")
	assert.Contains(t, usage, "-env")
	for name, s := range scenarios {
		assert.Contains(t, usage, "  "+name+" ")
		assert.Contains(t, usage, s.about)
	}
	assert.NotContains(t, usage, "request 1", "nothing was sent")
}

// TestDemoRedisDownPrintsNoGoRedisLog runs the command as a process of its own against a Redis URL nobody listens
// on: go-redis's own log lines (on stderr, through a logger it made at start-up) are silenced, and the demo says
// itself that Redis does not answer.
func TestDemoRedisDownPrintsNoGoRedisLog(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	unused := l.Addr().String()
	require.NoError(t, l.Close())

	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "replicas", "-requests", "3", "-redis", "redis://"+unused+"/0")
	cmd.WaitDelay = 10 * time.Second
	cmd.Dir = t.TempDir()
	// Under -race the child would sleep a second before it exits (GORACE's atexit_sleep_ms); it need not.
	cmd.Env = append(os.Environ(), childEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	require.NoError(t, errors.Join(err, ctx.Err()), "stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
	assert.Empty(t, stderr.String(), "nothing but the demo's own output")
	assert.NotContains(t, stdout.String(), "redis: ")
	assert.NotContains(t, stdout.String(), "pool.go")
	assert.Contains(t, stdout.String(), "request 1, on replica A")
	assert.Contains(t, stdout.String(), "Redis does not answer: this replica goes on with what it learns itself")
	assert.Contains(t, stdout.String(), "requests each backend received: eastus 2, westeurope 3, openai 0",
		"without Redis, each replica meets the 429 itself")
}
