package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// get fetches url with the gateway key and returns the status and body.
func get(t *testing.T, c *http.Client, url, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("api-key", key)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// -pprof-addr serves net/http/pprof on its own loopback listener, never on the gateway's address; without it,
// nothing serves profiles.
func TestPprofListener(t *testing.T) {
	isolate(t)
	setEnv(t, regionEnv(newRegion(t)))
	const gatewayKey = "gw-secret-71c0de44b2"
	t.Setenv(EnvGatewayKeys, gatewayKey)
	pprofAddr := freeAddr(t, "127.0.0.1")
	g := startGateway(t, "-addr", "127.0.0.1:0", "-pprof-addr", pprofAddr)
	c := newClient(t)

	status, body := get(t, c, "http://"+pprofAddr+"/debug/pprof/", "")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "goroutine")
	status, body = get(t, c, "http://"+pprofAddr+"/debug/pprof/goroutine?debug=1", "")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "goroutine profile:")
	status, _ = get(t, c, "http://"+g.addr+"/debug/pprof/", gatewayKey)
	assert.Equal(t, http.StatusNotFound, status, "profiles are never on the gateway's own address")

	require.NoError(t, g.stop(t))
	assertNotListening(t, pprofAddr)
	assert.Contains(t, g.log.String(), "pprof listening")
	assert.NotContains(t, g.log.String(), gatewayKey)
}

// The limits' flags reach the gateway: /metrics reports them, and the connections -max-conns counts.
func TestLimitFlags(t *testing.T) {
	isolate(t)
	setEnv(t, regionEnv(newRegion(t)))
	const gatewayKey = "gw-secret-5a9e21c7d3"
	t.Setenv(EnvGatewayKeys, gatewayKey)
	t.Setenv("GOMEMLIMIT", "") // restored after the test
	require.NoError(t, os.Unsetenv("GOMEMLIMIT"))
	before := debug.SetMemoryLimit(-1)
	g := startGateway(t, "-addr", "127.0.0.1:0", "-max-in-flight", "7", "-max-held-bytes", "300000000", "-max-conns", "3")

	idle, err := net.Dial("tcp", g.addr) // an open connection, without a request
	require.NoError(t, err)
	defer idle.Close()
	status, metrics := get(t, newClient(t), "http://"+g.addr+"/metrics", gatewayKey)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, metrics, "\naoai_gateway_in_flight_limit 7\n")
	assert.Contains(t, metrics, "\naoai_gateway_held_bytes_limit 300000000\n")
	assert.Contains(t, metrics, "\ngo_gc_gomemlimit_bytes 600000000\n", "without GOMEMLIMIT, twice the held bytes")
	assert.Contains(t, metrics, "\naoai_gateway_open_connections 2\n", "the idle connection and the scrape's")
	idle.Close()
	require.NoError(t, g.stop(t))
	assert.Equal(t, before, debug.SetMemoryLimit(-1), "the limit is restored when run returns")
}

// With GOMEMLIMIT set, the command leaves the Go memory limit alone: the runtime read it, and the gateway's byte
// budget derives from it.
func TestGOMEMLIMITRules(t *testing.T) {
	isolate(t)
	setEnv(t, regionEnv(newRegion(t)))
	const gatewayKey = "gw-secret-2b8d41f0e6"
	t.Setenv(EnvGatewayKeys, gatewayKey)
	t.Setenv("GOMEMLIMIT", "1GiB") // read by the runtime only at start: this process's limit stays
	limit := debug.SetMemoryLimit(-1)
	g := startGateway(t, "-addr", "127.0.0.1:0")
	_, metrics := get(t, newClient(t), "http://"+g.addr+"/metrics", gatewayKey)
	assert.Contains(t, metrics, "\ngo_gc_gomemlimit_bytes "+strconv.FormatInt(limit, 10)+"\n")
	require.NoError(t, g.stop(t))
	assert.Contains(t, g.log.String(), "memory_limit=0")
}
