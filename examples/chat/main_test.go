package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestChatThroughDotEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AZURE_OPENAI_") || strings.HasPrefix(k, "OPENAI_") || strings.HasPrefix(k, "FAILOVER_") {
			t.Setenv(k, "")
		}
	}
	east := failovertest.NewRegion("eastus")
	defer east.Close()
	east.SetDefault(failovertest.RateLimited(0))
	west := failovertest.NewRegion("westus", failovertest.WithEcho())
	defer west.Close()
	dir := t.TempDir()
	t.Chdir(dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), []byte(strings.Join([]string{
		"AZURE_OPENAI_ENDPOINT_1=" + east.URL, "AZURE_OPENAI_API_KEY_1=" + east.Key, "AZURE_OPENAI_REGION_1=eastus",
		"AZURE_OPENAI_ENDPOINT_2=" + west.URL, "AZURE_OPENAI_API_KEY_2=" + west.Key, "AZURE_OPENAI_REGION_2=westus",
		"FAILOVER_MODEL=gpt-4o",
	}, "\n")), 0o600))

	var out, log bytes.Buffer
	require.NoError(t, run(t.Context(), strings.NewReader(""), &out, &log, []string{"-v", "Write", "a", "haiku."}))
	assert.Equal(t, "Write a haiku.\n", out.String())
	assert.Contains(t, log.String(), "eastus: 429 failed over")
	assert.Contains(t, log.String(), "westus: 200 served")

	out.Reset()
	require.NoError(t, run(t.Context(), strings.NewReader("from stdin\n"), &out, &log, nil))
	assert.Equal(t, "from stdin\n", out.String())
	assert.ErrorContains(t, run(t.Context(), strings.NewReader(""), &out, &log, nil), "no prompt")

	out.Reset()
	require.NoError(t, run(t.Context(), strings.NewReader(""), &out, &log, []string{"-stream", "streamed", "words"}))
	assert.Equal(t, "streamed words\n", out.String())

	west.Script(failovertest.Reply{Content: "cut short here", StreamCutAfter: 2})
	out.Reset()
	err := run(t.Context(), strings.NewReader(""), &out, &log, []string{"-stream", "x"})
	assert.ErrorIs(t, err, failover.ErrStreamCut)
	assert.Equal(t, "cut short \n", out.String())
}

// TestChatUsageSaysItReadsDotEnv: -h says where the configuration comes from.
func TestChatUsageSaysItReadsDotEnv(t *testing.T) {
	var out, log bytes.Buffer
	require.ErrorIs(t, run(t.Context(), strings.NewReader(""), &out, &log, []string{"-h"}), flag.ErrHelp)
	usage := log.String()
	for _, want := range []string{"[flags] [prompt ...]", "AZURE_OPENAI_*", "from a .env file in the working directory",
		"the process environment wins", "-model", "-stream", "-v"} {
		assert.Contains(t, usage, want)
	}
	assert.Empty(t, out.String())
}
