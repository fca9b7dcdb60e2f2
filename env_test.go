package failover_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// isolateEnv runs the test in an empty directory with none of the library's variables set (see
// helpers_internal_test.go, which the package's own tests share).
var isolateEnv = failover.IsolateEnv

func writeDotEnv(t *testing.T, dir, text string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, failover.EnvFile), []byte(text), 0o600))
}

func TestNewFromEnvReadsDotEnv(t *testing.T) {
	dir := isolateEnv(t)
	writeDotEnv(t, dir, `# two regions and the public API
AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com
AZURE_OPENAI_API_KEY_1="`+secretKey+`"
AZURE_OPENAI_REGION_1=eastus
AZURE_OPENAI_ENDPOINT_2=https://two.openai.azure.com
AZURE_OPENAI_API_KEY_2=`+secretKey+`
AZURE_OPENAI_REGION_2=from-file
OPENAI_API_KEY=`+secretKey+`
FAILOVER_MODEL=gpt-4o-mini
`)
	t.Setenv("AZURE_OPENAI_REGION_2", "westus") // the process environment wins over the file

	c, err := failover.NewFromEnv()
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Equal(t, []string{"eastus", "westus", "openai"}, c.Regions())
	_, inProcess := os.LookupEnv("AZURE_OPENAI_ENDPOINT_1")
	assert.False(t, inProcess, "the file is read, not loaded into the process environment")
}

func TestNewFromEnvOptionsOverrideTheEnvironment(t *testing.T) {
	isolateEnv(t)
	t.Setenv("AZURE_OPENAI_ENDPOINT_1", "https://one.openai.azure.com")
	t.Setenv("AZURE_OPENAI_API_KEY_1", secretKey)
	t.Setenv("FAILOVER_ATTEMPT_TIMEOUT", "10s")
	c, err := failover.NewFromEnv(failover.WithAttemptTimeout(42e9))
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Equal(t, "42s", c.AttemptTimeout().String())
}

func TestEmptyProcessVariableDoesNotHideDotEnv(t *testing.T) {
	dir := isolateEnv(t)
	writeDotEnv(t, dir, "AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1="+secretKey+"\n")
	t.Setenv("AZURE_OPENAI_API_KEY_1", "") // as docker-compose exports ${UNSET}
	c, err := failover.NewFromEnv()
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Equal(t, []string{"one.openai.azure.com"}, c.Regions())
}

func TestNewFromEnvWithoutDotEnv(t *testing.T) {
	isolateEnv(t)
	t.Setenv("OPENAI_API_KEY", secretKey)
	c, err := failover.NewFromEnv()
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Equal(t, []string{"openai"}, c.Regions())
}

func TestNewFromEnvWithNothingConfigured(t *testing.T) {
	isolateEnv(t)
	c, err := failover.NewFromEnv()
	assert.Nil(t, c)
	require.ErrorIs(t, err, failover.ErrConfig)
	assert.Contains(t, err.Error(), "AZURE_OPENAI_ENDPOINT_1")
}

func TestNewFromEnvBadDotEnvDoesNotQuoteIt(t *testing.T) {
	dir := isolateEnv(t)
	writeDotEnv(t, dir, "AZURE_OPENAI_API_KEY_1=\""+secretKey+"\nAZURE OPENAI=x\n")
	c, err := failover.NewFromEnv()
	assert.Nil(t, c)
	require.Error(t, err)
	assert.Contains(t, err.Error(), ".env: cannot be parsed")
	assert.NotContains(t, err.Error(), secretKey)
	assert.NotContains(t, err.Error(), secretKey[:8], "not even part of the key")
}

// TestDotEnvExampleIsValid keeps .env.example in step with the parser: filled in with keys, it configures a
// client.
func TestDotEnvExampleIsValid(t *testing.T) {
	example, err := os.ReadFile(".env.example")
	require.NoError(t, err)
	dir := isolateEnv(t)
	writeDotEnv(t, dir, string(example))
	t.Setenv("AZURE_OPENAI_API_KEY_1", secretKey)
	t.Setenv("OPENAI_API_KEY", secretKey)
	c, err := failover.NewFromEnv() // region 2 uses Entra ID: DefaultAzureCredential is built, not yet asked
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Equal(t, []string{"eastus", "swedencentral", "openai"}, c.Regions())

	// Regions 3 and 4, commented out, are a v1 region and an OpenAI-compatible one.
	var lines []string
	for _, line := range strings.Split(string(example), "\n") {
		if rest, ok := strings.CutPrefix(line, "# AZURE_OPENAI_"); ok && (strings.Contains(rest, "_3=") || strings.Contains(rest, "_4=")) {
			line = "AZURE_OPENAI_" + rest
		}
		lines = append(lines, line)
	}
	writeDotEnv(t, dir, strings.Join(lines, "\n"))
	t.Setenv("AZURE_OPENAI_API_KEY_3", secretKey)
	t.Setenv("AZURE_OPENAI_API_KEY_4", secretKey)
	c, err = failover.NewFromEnv()
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Equal(t, []string{"eastus", "swedencentral", "my-resource-westus.openai.azure.com/openai/v1", "api.openai.com/v1", "openai"}, c.Regions())

	t.Setenv("AZURE_OPENAI_API_KEY_2", secretKey)
	_, err = failover.NewFromEnv()
	assert.ErrorContains(t, err, "AZURE_OPENAI_AUTH_2: is entra, but AZURE_OPENAI_API_KEY_2 is set too", "key and Entra ID are mixed per region, not within one")
}
