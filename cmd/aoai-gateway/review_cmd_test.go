package main

import (
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReviewGwEmptyGOMEMLIMITIsUnset: softMemoryLimit (memory.go) leaves the Go memory limit alone whenever the
// variable GOMEMLIMIT exists (os.LookupEnv), but the runtime reads an empty GOMEMLIMIT as no limit at all (as it
// does "off"). A deployment whose manifest passes GOMEMLIMIT through empty (GOMEMLIMIT=${GOMEMLIMIT}) so runs with no
// memory limit, the heap free to grow to twice the held bytes and more, while docs/gateway.md promises that without
// GOMEMLIMIT the command sets it to twice the byte budget. Right: an empty GOMEMLIMIT is treated as unset (the
// limit becomes 2 × 192 MiB here, go_gc_gomemlimit_bytes says so, and the log's memory_limit is not 0).
func TestReviewGwEmptyGOMEMLIMITIsUnset(t *testing.T) {
	isolate(t)
	setEnv(t, regionEnv(newRegion(t)))
	const gatewayKey = "gw-secret-9d13e0a7c5"
	t.Setenv(EnvGatewayKeys, gatewayKey)
	t.Setenv("GOMEMLIMIT", "") // set, but empty: the runtime took it for no limit
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	g := startGateway(t, "-addr", "127.0.0.1:0")
	status, metrics := get(t, newClient(t), "http://"+g.addr+"/metrics", gatewayKey)
	require.Equal(t, http.StatusOK, status)
	m := regexp.MustCompile(`(?m)^go_gc_gomemlimit_bytes (\d+)$`).FindStringSubmatch(metrics)
	require.NotNil(t, m, "no go_gc_gomemlimit_bytes in /metrics")
	assert.Equal(t, strconv.FormatInt(2*gateway.DefaultMaxHeldBytes, 10), m[1],
		"an empty GOMEMLIMIT is no limit: the command sets twice the byte budget")
	require.NoError(t, g.stop(t))
	assert.NotRegexp(t, `memory_limit=0\b`, g.log.String())
}
