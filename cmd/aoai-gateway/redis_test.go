package main

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/internal/redistest"
)

// TestGatewaysShareThroughRedis: two gateways with the same FAILOVER_REDIS_URL are two replicas of one fleet:
// the 429 one meets keeps the other away from that region.
func TestGatewaysShareThroughRedis(t *testing.T) {
	url := redistest.URL(t)
	isolate(t)
	east := newRegion(t)
	west := failovertest.NewRegion("westus", failovertest.WithKey("region-secret-west-81b3"))
	t.Cleanup(west.Close)
	env := regionEnv(east)
	env["AZURE_OPENAI_ENDPOINT_2"], env["AZURE_OPENAI_API_KEY_2"], env["AZURE_OPENAI_REGION_2"] = west.URL, west.Key, west.Name
	env["FAILOVER_REDIS_URL"] = url
	env["FAILOVER_REDIS_PREFIX"] = "test-gateway-" + rand.Text()[:8]
	env["FAILOVER_MAX_WAIT"] = "0"
	setEnv(t, env)
	const key = "gw-secret-7d1e0c"
	t.Setenv(EnvGatewayKeys, key)

	g1 := startGateway(t, "-addr", "127.0.0.1:0")
	g2 := startGateway(t, "-addr", "127.0.0.1:0")
	for _, g := range []*gatewayRun{g1, g2} {
		assert.Contains(t, g.log.String(), "shared=true", "the start says it shares")
	}
	east.Script(failovertest.RateLimited(30 * time.Second))
	c := newClient(t)
	auth := map[string]string{"api-key": key}
	assertOK(t, call(c, g1.addr, auth), "Hello from westus.")
	for range 3 {
		assertOK(t, call(c, g2.addr, auth), "Hello from westus.")
	}
	assert.Equal(t, 1, east.Requests(), "the second gateway learned the first one's 429")
}

// TestGatewayRunsWhileRedisIsOut: a store that cannot be reached costs nothing but one log line, which holds
// no password.
func TestGatewayRunsWhileRedisIsOut(t *testing.T) {
	isolate(t)
	region := newRegion(t)
	setEnv(t, regionEnv(region))
	const password = "redis-secret-4be9a2"
	t.Setenv("FAILOVER_REDIS_URL", "redis://:"+password+"@"+freeAddr(t, "127.0.0.1")+"/0")
	const key = "gw-secret-7d1e0c"
	t.Setenv(EnvGatewayKeys, key)

	g := startGateway(t, "-addr", "127.0.0.1:0")
	c := newClient(t)
	for range 3 {
		assertOK(t, call(c, g.addr, map[string]string{"api-key": key}), "Hello from eastus.")
	}
	require.NoError(t, g.stop(t))
	log := g.log.String()
	assert.Equal(t, 1, strings.Count(log, "store unreachable"), "logged once:\n%s", log)
	assert.NotContains(t, log, password)
	assert.NotContains(t, log, region.Key)
}

func TestRefusesUnreadableRedisURL(t *testing.T) {
	isolate(t)
	setEnv(t, regionEnv(newRegion(t)))
	const password = "redis-secret-4be9a2"
	t.Setenv("FAILOVER_REDIS_URL", "redis://:"+password+"@127.0.0.1:notaport/0")
	t.Setenv(EnvGatewayKeys, "k")
	err := refuse(t, "-addr", "127.0.0.1:0")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "FAILOVER_REDIS_URL")
	assert.NotContains(t, err.Error(), password)
}
