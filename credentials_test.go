package failover

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const envSecret = "env-S3cret-Key-9f8e7d6c5b4a"

// clientFromEnv is NewFromEnv without the process environment or a file.
func clientFromEnv(t *testing.T, env map[string]string) (*Client, error) {
	t.Helper()
	cfg, err := configFromEnv(env)
	if err != nil {
		return nil, err
	}
	c, err := build(cfg)
	if c != nil {
		t.Cleanup(c.CloseIdleConnections)
	}
	return c, err
}

func TestEnvRegionsInAscendingNumberOrder(t *testing.T) {
	c, err := clientFromEnv(t, map[string]string{
		"AZURE_OPENAI_ENDPOINT_10": "https://ten.openai.azure.com", "AZURE_OPENAI_API_KEY_10": envSecret,
		"AZURE_OPENAI_ENDPOINT_3": "https://three.openai.azure.com/", "AZURE_OPENAI_API_KEY_3": envSecret,
		"AZURE_OPENAI_ENDPOINT_1": " https://one.openai.azure.com ", "AZURE_OPENAI_API_KEY_1": envSecret,
		"AZURE_OPENAI_REGION_3":   "swedencentral",
		"AZURE_OPENAI_ENDPOINT_7": "", "AZURE_OPENAI_API_KEY_7": "  ", // empty counts as unset
		"UNRELATED_VARIABLE":           "x",
		"AZURE_OPENAI_DEPLOYMENT_NAME": "not ours",
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"one.openai.azure.com", "swedencentral", "ten.openai.azure.com"}, c.Regions())
}

func TestEnvRegionSettings(t *testing.T) {
	c, err := clientFromEnv(t, map[string]string{
		"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret,
		"AZURE_OPENAI_ENDPOINT_2": "https://two.openai.azure.com", "AZURE_OPENAI_API_KEY_2": envSecret,
		"AZURE_OPENAI_DEPLOYMENTS_1": " gpt-4o = prod-4o , text-embedding-3-small=embed,",
		"AZURE_OPENAI_API_VERSION":   "2024-06-01",
		"AZURE_OPENAI_API_VERSION_2": "2025-04-01-preview",
		"OPENAI_API_KEY":             envSecret,
		"OPENAI_BASE_URL":            "https://proxy.example.com/v1/",
		"FAILOVER_MODEL":             "gpt-4o",
		"FAILOVER_ATTEMPT_TIMEOUT":   "45s",
	})
	require.NoError(t, err)
	b := c.engine.backends
	require.Len(t, b, 3)
	assert.Equal(t, map[string]string{"gpt-4o": "prod-4o", "text-embedding-3-small": "embed"}, b[0].deployments)
	assert.Equal(t, "api-version=2024-06-01", b[0].query)
	assert.Equal(t, "api-version=2025-04-01-preview", b[1].query)
	assert.Equal(t, OpenAIFallbackName, b[2].name)
	assert.Equal(t, "proxy.example.com", b[2].host)
	assert.Equal(t, "/v1", b[2].path)
	assert.Equal(t, []string{"Bearer " + envSecret}, b[2].authValue)
	assert.Equal(t, "gpt-4o", c.model)
	assert.Equal(t, 45*time.Second, c.AttemptTimeout())
}

func TestEnvUnsuffixedPairIsRegionOne(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		c, err := clientFromEnv(t, map[string]string{
			"AZURE_OPENAI_ENDPOINT": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY": envSecret,
			"AZURE_OPENAI_ENDPOINT_2": "https://two.openai.azure.com", "AZURE_OPENAI_API_KEY_2": envSecret,
		})
		require.NoError(t, err)
		assert.Equal(t, []string{"one.openai.azure.com", "two.openai.azure.com"}, c.Regions())
	})
	t.Run("both spellings, same values", func(t *testing.T) {
		c, err := clientFromEnv(t, map[string]string{
			"AZURE_OPENAI_ENDPOINT": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY": envSecret,
			"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret,
		})
		require.NoError(t, err)
		assert.Equal(t, []string{"one.openai.azure.com"}, c.Regions())
	})
	t.Run("mixed spellings", func(t *testing.T) {
		c, err := clientFromEnv(t, map[string]string{
			"AZURE_OPENAI_ENDPOINT": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret,
		})
		require.NoError(t, err)
		assert.Equal(t, []string{"one.openai.azure.com"}, c.Regions())
	})
	t.Run("both spellings, different keys", func(t *testing.T) {
		_, err := clientFromEnv(t, map[string]string{
			"AZURE_OPENAI_ENDPOINT": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY": envSecret,
			"AZURE_OPENAI_API_KEY_1": envSecret + "-other",
		})
		requireConfigError(t, err, "AZURE_OPENAI_API_KEY_1", "conflicts with AZURE_OPENAI_API_KEY")
	})
	t.Run("both spellings, different endpoints", func(t *testing.T) {
		_, err := clientFromEnv(t, map[string]string{
			"AZURE_OPENAI_ENDPOINT": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY": envSecret,
			"AZURE_OPENAI_ENDPOINT_1": "https://other.openai.azure.com",
		})
		requireConfigError(t, err, "AZURE_OPENAI_ENDPOINT_1", "conflicts with AZURE_OPENAI_ENDPOINT")
	})
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	region1 := map[string]string{"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret}
	plus := func(kv ...string) map[string]string {
		env := map[string]string{}
		for k, v := range region1 {
			env[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	cases := []struct {
		name    string
		env     map[string]string
		field   string
		problem string
	}{
		{"endpoint without key", plus("AZURE_OPENAI_ENDPOINT_2", "https://two.openai.azure.com"), "AZURE_OPENAI_API_KEY_2", "no API key"},
		{"key without endpoint", plus("AZURE_OPENAI_API_KEY_2", envSecret), "AZURE_OPENAI_ENDPOINT_2", "no endpoint"},
		{"unsuffixed key without endpoint", map[string]string{"AZURE_OPENAI_API_KEY": envSecret}, "AZURE_OPENAI_ENDPOINT_1", "no endpoint"},
		{"name without endpoint", plus("AZURE_OPENAI_REGION_4", "westus"), "AZURE_OPENAI_ENDPOINT_4", "must be set"},
		{"unparsable URL", plus("AZURE_OPENAI_ENDPOINT_1", "https://%zz"), "AZURE_OPENAI_ENDPOINT_1", "not an absolute URL"},
		{"plain http", plus("AZURE_OPENAI_ENDPOINT_1", "http://one.openai.azure.com"), "AZURE_OPENAI_ENDPOINT_1", "must use https"},
		{"duplicate region", plus("AZURE_OPENAI_ENDPOINT_2", "https://ONE.openai.azure.com/", "AZURE_OPENAI_API_KEY_2", envSecret),
			"AZURE_OPENAI_ENDPOINT_2", "same endpoint as AZURE_OPENAI_ENDPOINT_1"},
		{"duplicate name", plus("AZURE_OPENAI_ENDPOINT_2", "https://two.openai.azure.com", "AZURE_OPENAI_API_KEY_2", envSecret,
			"AZURE_OPENAI_REGION_2", "one.openai.azure.com"), "AZURE_OPENAI_REGION_2", "must be unique"},
		{"word suffix, nothing else", map[string]string{"AZURE_OPENAI_ENDPOINT_WESTUS": "https://two.openai.azure.com"},
			"AZURE_OPENAI_ENDPOINT_1", "AZURE_OPENAI_ENDPOINT_WESTUS not read"},
		{"zero suffix", plus("AZURE_OPENAI_API_KEY_0", envSecret), "AZURE_OPENAI_API_KEY_0", "region number 0"},
		{"suffix past 999", plus("AZURE_OPENAI_ENDPOINT_1000", "https://x.openai.azure.com"), "AZURE_OPENAI_ENDPOINT_1000", "expected 1 to 999"},
		{"leading zero conflicts", plus("AZURE_OPENAI_ENDPOINT_01", "https://x.openai.azure.com"), "AZURE_OPENAI_ENDPOINT_1", "conflicts with AZURE_OPENAI_ENDPOINT_01"},
		{"deployments syntax", plus("AZURE_OPENAI_DEPLOYMENTS_1", "gpt-4o:prod"), "AZURE_OPENAI_DEPLOYMENTS_1", "model=deployment"},
		{"deployments twice", plus("AZURE_OPENAI_DEPLOYMENTS_1", "gpt-4o=a,gpt-4o=b"), "AZURE_OPENAI_DEPLOYMENTS_1", "twice"},
		{"deployment name", plus("AZURE_OPENAI_DEPLOYMENTS_1", "gpt-4o=a/b"), "AZURE_OPENAI_DEPLOYMENTS_1", "deployment name"},
		{"global api version", plus("AZURE_OPENAI_API_VERSION", "v1"), "AZURE_OPENAI_API_VERSION", "expected a date"},
		{"global api version that every region overrides", plus("AZURE_OPENAI_API_VERSION", "v1", "AZURE_OPENAI_API_VERSION_1", "2024-10-21"),
			"AZURE_OPENAI_API_VERSION", "expected a date"},
		{"global deployments", plus("AZURE_OPENAI_DEPLOYMENTS", "gpt-4o"), "AZURE_OPENAI_DEPLOYMENTS", "entry 1 is not model=deployment"},
		{"a key in the api version", plus("AZURE_OPENAI_API_VERSION_1", envSecret), "AZURE_OPENAI_API_VERSION_1", "expected a date"},
		{"a key in the deployments", plus("AZURE_OPENAI_DEPLOYMENTS_1", "gpt-4o=x,"+envSecret), "AZURE_OPENAI_DEPLOYMENTS_1", "entry 2"},
		{"a key in the timeout", plus("FAILOVER_ATTEMPT_TIMEOUT", envSecret), "FAILOVER_ATTEMPT_TIMEOUT", "Go duration"},
		{"region api version", plus("AZURE_OPENAI_API_VERSION_1", "2024-13"), "AZURE_OPENAI_API_VERSION_1", "expected a date"},
		{"key with a newline", plus("AZURE_OPENAI_API_KEY_1", envSecret+"\nX"), "AZURE_OPENAI_API_KEY_1", "control characters"},
		{"nothing", map[string]string{"PATH": "/bin"}, "AZURE_OPENAI_ENDPOINT_1", "no region is configured"},
		{"base URL without key", plus("OPENAI_BASE_URL", "https://api.openai.com/v1"), "OPENAI_API_KEY", "needs an API key"},
		{"base URL over http", plus("OPENAI_API_KEY", envSecret, "OPENAI_BASE_URL", "http://api.openai.com/v1"), "OPENAI_BASE_URL", "must use https"},
		{"attempt timeout", plus("FAILOVER_ATTEMPT_TIMEOUT", "30"), "FAILOVER_ATTEMPT_TIMEOUT", "Go duration"},
		{"negative attempt timeout", plus("FAILOVER_ATTEMPT_TIMEOUT", "-5s"), "FAILOVER_ATTEMPT_TIMEOUT", "positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := clientFromEnv(t, tc.env)
			assert.Nil(t, c)
			requireConfigError(t, err, tc.field, tc.problem)
		})
	}
}

// TestEnvFallbackErrorsNameItsSource: the OpenAI fallback's errors name the variables while the environment's
// fallback is in effect, and the option once WithOpenAIFallback replaces it.
func TestEnvFallbackErrorsNameItsSource(t *testing.T) {
	env := map[string]string{"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret,
		"OPENAI_API_KEY": envSecret + " x"}
	cfg, err := configFromEnv(env)
	require.NoError(t, err)
	_, err = build(cfg)
	requireConfigError(t, err, "OPENAI_API_KEY", "control characters")

	cfg, err = configFromEnv(env)
	require.NoError(t, err)
	cfg.opts = append(cfg.opts, WithOpenAIFallback(envSecret, "http://api.openai.com/v1"))
	_, err = build(cfg)
	requireConfigError(t, err, "WithOpenAIFallback(baseURL)", "must use https")
	assert.Len(t, flatten(err), 1, "the environment's key is replaced, not checked: %v", err)
}

func TestEnvIgnoresOtherSuffixes(t *testing.T) {
	c, err := clientFromEnv(t, map[string]string{
		"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret,
		"AZURE_OPENAI_API_KEY_SECONDARY": envSecret, "AZURE_OPENAI_ENDPOINT_-2": "x", "AZURE_OPENAI_REGION_": "y",
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"one.openai.azure.com"}, c.Regions())
}

func TestEnvUnsuffixedNameAndDeployments(t *testing.T) {
	c, err := clientFromEnv(t, map[string]string{
		"AZURE_OPENAI_ENDPOINT_1": "https://one.openai.azure.com", "AZURE_OPENAI_API_KEY_1": envSecret,
		"AZURE_OPENAI_ENDPOINT_2": "https://two.openai.azure.com", "AZURE_OPENAI_API_KEY_2": envSecret,
		"AZURE_OPENAI_REGION":        "eastus",
		"AZURE_OPENAI_DEPLOYMENTS":   "gpt-4o=shared-4o",
		"AZURE_OPENAI_DEPLOYMENTS_2": "gpt-4o=own-4o",
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"eastus", "two.openai.azure.com"}, c.Regions())
	assert.Equal(t, "shared-4o", c.engine.backends[0].deployment("gpt-4o"), "the unsuffixed map serves regions without their own")
	assert.Equal(t, "own-4o", c.engine.backends[1].deployment("gpt-4o"))
}

func TestEnvOpenAIAlone(t *testing.T) {
	c, err := clientFromEnv(t, map[string]string{"OPENAI_API_KEY": envSecret})
	require.NoError(t, err)
	assert.Equal(t, []string{OpenAIFallbackName}, c.Regions())
	assert.Equal(t, "api.openai.com", c.engine.backends[0].host)
}

// TestNewFromEnvFile: the file at the path is read instead of the working directory's .env; the process
// environment wins over the file, and options over both.
func TestNewFromEnvFile(t *testing.T) {
	cwd := isolateEnv(t)
	require.NoError(t, os.WriteFile(filepath.Join(cwd, EnvFile), []byte("AZURE_OPENAI_ENDPOINT_3=https://three.openai.azure.com\n"), 0o600))
	path := filepath.Join(t.TempDir(), "fake-regions.env")
	require.NoError(t, os.WriteFile(path, []byte(`# fake regions on random ports
AZURE_OPENAI_ENDPOINT_1=http://127.0.0.1:41234
AZURE_OPENAI_API_KEY_1="`+envSecret+`"
AZURE_OPENAI_REGION_1=from-file
AZURE_OPENAI_ENDPOINT_2=http://127.0.0.1:41235
AZURE_OPENAI_API_KEY_2=`+envSecret+`
AZURE_OPENAI_REGION_2=from-file-too
FAILOVER_ATTEMPT_TIMEOUT=5s
FAILOVER_MAX_WAIT=2s
`), 0o600))
	t.Setenv("AZURE_OPENAI_REGION_2", "from-process")

	c, err := NewFromEnvFile(path, WithAttemptTimeout(3*time.Second))
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	assert.Equal(t, []string{"from-file", "from-process"}, c.Regions(), "the file at path, not ./.env; the process wins")
	assert.Equal(t, 3*time.Second, c.AttemptTimeout(), "the option wins over the file")
	assert.Equal(t, 2*time.Second, c.engine.maxWait)
	assert.Equal(t, "127.0.0.1:41234", c.engine.backends[0].host)
	_, inProcess := os.LookupEnv("AZURE_OPENAI_ENDPOINT_1")
	assert.False(t, inProcess, "the file is read, not loaded into the process environment")
}

// TestNewFromEnvFileMissing: an explicit path must exist (NewFromEnv's .env need not); the error names the path.
func TestNewFromEnvFileMissing(t *testing.T) {
	isolateEnv(t)
	t.Setenv("OPENAI_API_KEY", envSecret) // the environment alone would configure a client
	path := filepath.Join(t.TempDir(), "missing.env")
	c, err := NewFromEnvFile(path)
	assert.Nil(t, c)
	require.ErrorIs(t, err, fs.ErrNotExist)
	assert.Equal(t, "failover: "+path+": cannot be read: file does not exist", err.Error())

	c, err = NewFromEnv()
	require.NoError(t, err, "NewFromEnv's .env is optional")
	c.CloseIdleConnections()

	dir := t.TempDir() // a path that is there but cannot be read as a file
	c, err = NewFromEnvFile(dir)
	assert.Nil(t, c)
	require.Error(t, err)
	assert.Equal(t, "failover: "+dir+": cannot be read: is a directory", err.Error(), "what the system says, not a parse error")
}

// TestNewFromEnvFileBadFileDoesNotQuoteIt: the file's errors name it and withhold its text, as NewFromEnv's do.
func TestNewFromEnvFileBadFileDoesNotQuoteIt(t *testing.T) {
	isolateEnv(t)
	path := filepath.Join(t.TempDir(), "bad.env")
	require.NoError(t, os.WriteFile(path, []byte("AZURE_OPENAI_API_KEY_1=\""+envSecret+"\nAZURE OPENAI=x\n"), 0o600))
	c, err := NewFromEnvFile(path)
	assert.Nil(t, c)
	require.Error(t, err)
	assert.Contains(t, err.Error(), path+": cannot be parsed")
	assert.NotContains(t, err.Error(), envSecret[:8])
}

// requireConfigError checks that err holds a *ConfigError for field whose problem mentions problem, and that no
// secret leaked into the message.
func requireConfigError(t *testing.T, err error, field, problem string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrConfig)
	assert.NotContains(t, err.Error(), envSecret)
	var found []string
	for _, e := range flatten(err) {
		var cfgErr *ConfigError
		if errors.As(e, &cfgErr) {
			if cfgErr.Field == field {
				assert.Contains(t, cfgErr.Problem, problem)
				return
			}
			found = append(found, cfgErr.Field)
		}
	}
	t.Fatalf("no error for %s; errors for %v: %v", field, found, err)
}

func flatten(err error) []error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var all []error
		for _, e := range joined.Unwrap() {
			all = append(all, flatten(e)...)
		}
		return all
	}
	return []error{err}
}
