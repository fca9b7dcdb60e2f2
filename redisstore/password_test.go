package redisstore_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/redisstore"
)

// TestOpenErrorHoldsNoPieceOfThePassword: an Azure Cache for Redis access key is base64 and often holds "/".
// Pasted unescaped into rediss://:<access key>@host:6380/0, it makes url.Parse fail with a message that quotes
// the start of the key. Neither redisstore.Open nor NewFromEnv (which aoai-gateway prints at startup) passes any
// of it on.
func TestOpenErrorHoldsNoPieceOfThePassword(t *testing.T) {
	const secret = "Zq9SECRETkeyStart"
	raw := "rediss://:" + secret + "/Wx+yz0=@myapp.redis.cache.windows.net:6380/0"

	_, err := redisstore.Open(raw, "")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), secret, "redisstore.Open")

	// The same through NewFromEnv, as aoai-gateway builds its client.
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AZURE_OPENAI_") || strings.HasPrefix(k, "OPENAI_") || strings.HasPrefix(k, "FAILOVER_") {
			t.Setenv(k, "")
		}
	}
	t.Chdir(t.TempDir()) // no .env
	t.Setenv("AZURE_OPENAI_ENDPOINT_1", "https://east.example.com/")
	t.Setenv("AZURE_OPENAI_API_KEY_1", "k")
	t.Setenv("FAILOVER_MODEL", "gpt-4o")
	t.Setenv(failover.EnvRedisURL, raw)
	c, err := failover.NewFromEnv(failover.WithStoreOpener(redisstore.Opener))
	assert.Nil(t, c)
	require.ErrorIs(t, err, failover.ErrConfig)
	assert.NotContains(t, err.Error(), secret, "failover.NewFromEnv")
}
