package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// childEnv makes the test binary run the command's main instead of the tests: TestSIGTERMDrains starts it so.
const childEnv = "AOAI_GATEWAY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main() // exits 1 itself on an error
		os.Exit(0)
	}
	os.Exit(redistest.Main(m.Run)) // Redis for the tests, and a check for goroutines left behind
}

// wait bounds every wait in these tests: nothing here needs more than a fraction of it.
const wait = 10 * time.Second

// chatPath is an Azure-shaped chat completions path; the deployment names the model.
const chatPath = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"

const chatBody = `{"messages":[{"role":"user","content":"hi"}]}`

// configPrefixes are the prefixes of the variables the command and the library read.
var configPrefixes = []string{"AZURE_OPENAI_", "OPENAI_", "FAILOVER_"}

func isConfigVar(name string) bool {
	for _, p := range configPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// isolate runs the test in an empty directory (no ./.env) with none of the configuration variables set.
func isolate(t *testing.T) {
	t.Helper()
	t.Chdir(t.TempDir())
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); isConfigVar(k) {
			t.Setenv(k, "") // restores the value afterwards
			require.NoError(t, os.Unsetenv(k))
		}
	}
	t.Setenv(EnvGatewayKeys, "")
	require.NoError(t, os.Unsetenv(EnvGatewayKeys))
}

// newRegion starts a fake region with a distinctive key, closed when the test ends.
func newRegion(t *testing.T, opts ...failovertest.Option) *failovertest.Server {
	t.Helper()
	opts = append([]failovertest.Option{failovertest.WithKey("region-secret-5f2c9e71d4")}, opts...)
	region := failovertest.NewRegion("eastus", opts...)
	t.Cleanup(region.Close)
	return region
}

// regionEnv is the configuration of one region.
func regionEnv(region *failovertest.Server) map[string]string {
	return map[string]string{
		"AZURE_OPENAI_ENDPOINT_1": region.URL,
		"AZURE_OPENAI_API_KEY_1":  region.Key,
		"AZURE_OPENAI_REGION_1":   region.Name,
	}
}

func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// logBuffer is a stderr that tests can read while the command writes, and wait on.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor waits until the log contains s.
func (l *logBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for {
		l.mu.Lock()
		found, changed := strings.Contains(l.buf.String(), s), l.changed
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("the log never said %q; it holds:\n%s", s, l.String())
		}
	}
}

// gatewayRun is one run of the command in this process.
type gatewayRun struct {
	addr   string
	log    *logBuffer
	done   chan error // run's result
	cancel context.CancelFunc
}

// startGateway runs the command with args until the test ends or stop is called, and waits until it listens.
func startGateway(t *testing.T, args ...string) *gatewayRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := &gatewayRun{log: newLogBuffer(), done: make(chan error, 1), cancel: cancel}
	ready := make(chan string, 1)
	go func() { g.done <- run(ctx, args, g.log, func(addr string) { ready <- addr }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-g.done:
		case <-time.After(wait):
			t.Errorf("run did not return after its context ended")
		}
	})
	select {
	case g.addr = <-ready:
	case err := <-g.done:
		g.done <- err // for the cleanup
		t.Fatalf("run returned before it listened: %v\n%s", err, g.log)
	case <-time.After(wait):
		t.Fatalf("run did not listen; log:\n%s", g.log)
	}
	return g
}

// stop ends run's context, as SIGTERM does, and returns run's result.
func (g *gatewayRun) stop(t *testing.T) error {
	t.Helper()
	g.cancel()
	select {
	case err := <-g.done:
		g.done <- err // for the cleanup
		return err
	case <-time.After(wait):
		t.Fatalf("run did not return after its context ended; log:\n%s", g.log)
		return nil
	}
}

// newClient is an HTTP client that keeps no connection open after a request.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

// answer is what a caller got.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// call sends a chat completion to the gateway at addr, with the headers given.
func call(c *http.Client, addr string, header map[string]string) answer {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+chatPath, strings.NewReader(chatBody))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// content is the assistant's text in a chat completion body.
func content(t *testing.T, body []byte) string {
	t.Helper()
	var completion struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	require.NoError(t, json.Unmarshal(body, &completion), "a JSON chat completion: %s", body)
	assert.Equal(t, "chat.completion", completion.Object)
	require.Len(t, completion.Choices, 1, "%s", body)
	return completion.Choices[0].Message.Content
}

func assertOK(t *testing.T, a answer, want string) {
	t.Helper()
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	assert.Equal(t, "application/json", a.header.Get("Content-Type"))
	assert.Equal(t, want, content(t, a.body))
}

// freeAddr is host:port of a port nobody listens on now, on host.
func freeAddr(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// assertNotListening asserts that nothing accepts connections on the port of addr, on loopback.
func assertNotListening(t *testing.T, addr string) {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), wait)
	if err == nil {
		conn.Close()
		t.Errorf("something listens on port %s", port)
		return
	}
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "connection refused, got %v", err)
}

// waitRefused dials addr until the connection is refused: the listener has closed. Connections that still got
// through, in the moment before it closed, are closed at once.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		conn, err := net.DialTimeout("tcp", addr, wait)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		// ECONNRESET: the connection was queued when the listener closed. Try again.
		require.True(t, err == nil || errors.Is(err, syscall.ECONNRESET), "connection refused, got %v", err)
		if conn != nil {
			conn.Close()
		}
		require.True(t, time.Now().Before(deadline), "%s still accepts connections", addr)
	}
}

// refuse runs the command with args, which must refuse to start, and returns its error after checking that it
// never listened.
func refuse(t *testing.T, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newLogBuffer()
	listened := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, log, func(addr string) { listened <- addr }) }()
	var err error
	select {
	case err = <-done:
	case addr := <-listened:
		cancel()
		<-done
		t.Fatalf("the command started, on %s, instead of refusing; log:\n%s", addr, log)
	case <-time.After(wait):
		t.Fatal("the command neither started nor refused")
	}
	require.Error(t, err, "refused")
	select {
	case addr := <-listened:
		t.Errorf("ready was called, with %s", addr)
	default:
	}
	assert.NotContains(t, log.String(), "listening")
	return err
}

func TestRefusals(t *testing.T) {
	const gatewayKey = "gw-secret-8d1e4b7a09"
	tests := []struct {
		name     string
		env      map[string]string // besides a good region
		noRegion bool              // no region configured
		host     string            // the host of -addr
		args     []string          // after -addr
		want     []string          // in the error
		secrets  []string          // not in the error
	}{
		{name: "no keys", host: "127.0.0.1", want: []string{EnvGatewayKeys, "-insecure-no-auth"}},
		{name: "blank keys", env: map[string]string{EnvGatewayKeys: "  "}, host: "127.0.0.1", want: []string{EnvGatewayKeys}},
		{name: "no auth on every interface", host: "0.0.0.0", args: []string{"-insecure-no-auth"}, want: []string{"-insecure-no-auth", "loopback"}},
		{name: "no auth with keys", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-insecure-no-auth"},
			want: []string{"-insecure-no-auth", EnvGatewayKeys}, secrets: []string{gatewayKey}},
		{name: "empty key", env: map[string]string{EnvGatewayKeys: "k-alpha-3c9f,,k-beta-7e21"}, host: "127.0.0.1",
			want: []string{EnvGatewayKeys, "key 2 is empty"}, secrets: []string{"k-alpha-3c9f", "k-beta-7e21"}},
		{name: "trailing comma", env: map[string]string{EnvGatewayKeys: "k-alpha-3c9f,"}, host: "127.0.0.1",
			want: []string{EnvGatewayKeys, "key 2 is empty"}, secrets: []string{"k-alpha-3c9f"}},
		{name: "max body 0", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-max-body", "0"}, want: []string{"-max-body"}},
		{name: "max upload 0", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-max-upload", "0"}, want: []string{"-max-upload"}},
		{name: "negative drain timeout", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-drain-timeout", "-1s"}, want: []string{"-drain-timeout"}},
		{name: "max in flight 0", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-max-in-flight", "0"}, want: []string{"-max-in-flight"}},
		{name: "max conns 0", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-max-conns", "0"}, want: []string{"-max-conns"}},
		{name: "negative held bytes", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-max-held-bytes", "-1"}, want: []string{"-max-held-bytes"}},
		{name: "held bytes below max upload", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-max-held-bytes", "1000"}, want: []string{"-max-held-bytes", "-max-upload"}},
		{name: "pprof on every interface", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-pprof-addr", "0.0.0.0:6060"}, want: []string{"-pprof-addr", "loopback"}},
		{name: "unknown flag", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-no-such-flag"}, want: []string{"no-such-flag"}},
		{name: "extra argument", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"serve"}, want: []string{"unexpected argument", `"serve"`}},
		{name: "region config error", noRegion: true, host: "127.0.0.1",
			env: map[string]string{EnvGatewayKeys: gatewayKey, "AZURE_OPENAI_ENDPOINT_1": "https://eastus.example.com",
				"AZURE_OPENAI_API_KEY_2": "region-secret-2a6b0c4e93"},
			want: []string{"AZURE_OPENAI_API_KEY_1", "AZURE_OPENAI_ENDPOINT_2"}, secrets: []string{gatewayKey, "region-secret-2a6b0c4e93"}},
		{name: "certificate without key", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1", args: []string{"-tls-cert", "cert.pem"}, want: []string{"-tls-cert", "-tls-key"}},
		{name: "missing certificate files", env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1",
			args: []string{"-tls-cert", "nope.pem", "-tls-key", "nope-key.pem"}, want: []string{"-tls-cert", "nope.pem"}},
		{name: "no region", noRegion: true, env: map[string]string{EnvGatewayKeys: gatewayKey}, host: "127.0.0.1",
			want: []string{"AZURE_OPENAI_ENDPOINT_1"}, secrets: []string{gatewayKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			if !tt.noRegion {
				setEnv(t, regionEnv(newRegion(t)))
			}
			setEnv(t, tt.env)
			addr := freeAddr(t, tt.host)
			err := refuse(t, append([]string{"-addr", addr}, tt.args...)...)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			t.Logf("error: %v", err)
			for _, s := range tt.secrets {
				assert.NotContains(t, err.Error(), s, "the error quotes a secret")
			}
			assertNotListening(t, addr)
		})
	}
}

// TestRefusesUnparsableEnvFile shows that a ./.env the command cannot parse is refused without quoting it.
func TestRefusesUnparsableEnvFile(t *testing.T) {
	isolate(t)
	const secret = "gw-secret-0b5d8f3e6a"
	require.NoError(t, os.WriteFile(".env", []byte(EnvGatewayKeys+"=\""+secret+"\n"), 0o600))
	addr := freeAddr(t, "127.0.0.1")
	err := refuse(t, "-addr", addr)
	assert.Contains(t, err.Error(), ".env")
	assert.NotContains(t, err.Error(), secret)
	assertNotListening(t, addr)
}

// TestKeysFromEnvFile shows that the gateway keys, like the library's variables, are read from ./.env when the
// process environment does not set them.
func TestKeysFromEnvFile(t *testing.T) {
	isolate(t)
	region := newRegion(t)
	region.Script(failovertest.OK("from the env file"))
	const gatewayKey = "gw-secret-4e7a1c9b20"
	var env strings.Builder
	env.WriteString(EnvGatewayKeys + "=other-key-1f3d," + gatewayKey + "\n")
	for k, v := range regionEnv(region) {
		env.WriteString(k + "=" + v + "\n")
	}
	require.NoError(t, os.WriteFile(".env", []byte(env.String()), 0o600))

	g := startGateway(t, "-addr", "127.0.0.1:0")
	c := newClient(t)
	assertOK(t, call(c, g.addr, map[string]string{"api-key": gatewayKey}), "from the env file")
	assertOK(t, call(c, g.addr, map[string]string{"Authorization": "Bearer " + gatewayKey}), "Hello from eastus.")
	for name, header := range map[string]map[string]string{
		"no key":     nil,
		"wrong key":  {"api-key": "wrong-key-6c2e"},
		"region key": {"api-key": region.Key}, // the upstream key is not a gateway key
	} {
		a := call(c, g.addr, header)
		require.NoError(t, a.err, name)
		assert.Equal(t, http.StatusUnauthorized, a.status, "%s: %s", name, a.body)
	}
	require.Len(t, region.Calls(), 2, "only the authenticated requests went upstream")
	require.NoError(t, g.stop(t))
	log := g.log.String()
	assert.NotContains(t, log, gatewayKey)
	assert.NotContains(t, log, region.Key)
}

// TestInsecureNoAuthOnLoopback shows that -insecure-no-auth serves callers without a key on a loopback address.
func TestInsecureNoAuthOnLoopback(t *testing.T) {
	isolate(t)
	region := newRegion(t)
	setEnv(t, regionEnv(region))
	g := startGateway(t, "-insecure-no-auth", "-addr", "127.0.0.1:0")
	c := newClient(t)
	assertOK(t, call(c, g.addr, nil), "Hello from eastus.")
	resp, err := c.Get("http://" + g.addr + "/status")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "/status needs no key either")
	require.NoError(t, g.stop(t))
	assert.Contains(t, g.log.String(), "auth=false")
	calls := region.Calls()
	require.Len(t, calls, 1)
	assert.True(t, calls[0].Authorized, "the gateway sent the region's key")
}

// holdingRegion is a fake region that holds each request, once it has it in hand, until released.
type holdingRegion struct {
	*failovertest.Server
	arrived chan struct{}
	release func()
}

func newHoldingRegion(t *testing.T) *holdingRegion {
	t.Helper()
	release := make(chan struct{})
	h := &holdingRegion{arrived: make(chan struct{}, 16)}
	var once sync.Once
	h.release = func() { once.Do(func() { close(release) }) }
	h.Server = newRegion(t, failovertest.WithOnRequest(func(failovertest.Call) {
		h.arrived <- struct{}{}
		<-release
	}))
	t.Cleanup(h.release) // before the region closes: Close waits for its handlers
	return h
}

func (h *holdingRegion) waitArrived(t *testing.T) {
	t.Helper()
	select {
	case <-h.arrived:
	case <-time.After(wait):
		t.Fatal("the request never reached the region")
	}
}

// inFlight sends a request in the background.
func inFlight(c *http.Client, addr string, header map[string]string) <-chan answer {
	ch := make(chan answer, 1)
	go func() { ch <- call(c, addr, header) }()
	return ch
}

func receive(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(wait):
		t.Fatal("no answer")
		return answer{}
	}
}

// TestDrain shows what the end of run's context (SIGTERM, in main) does: the listener closes at once, and the
// request in flight is served to its end before run returns.
func TestDrain(t *testing.T) {
	isolate(t)
	region := newHoldingRegion(t)
	region.Script(failovertest.OK("served while draining"))
	const gatewayKey = "gw-secret-93ac2f5e1d"
	setEnv(t, regionEnv(region.Server))
	t.Setenv(EnvGatewayKeys, gatewayKey)
	g := startGateway(t, "-addr", "127.0.0.1:0")
	t.Cleanup(region.release) // on failure, before the cleanup that waits for run
	c := newClient(t)
	// An idle keep-alive connection must not hold the drain up.
	keepAlive := &http.Transport{}
	t.Cleanup(keepAlive.CloseIdleConnections)
	resp, err := (&http.Client{Transport: keepAlive, Timeout: wait}).Get("http://" + g.addr + "/healthz")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	pending := inFlight(c, g.addr, map[string]string{"api-key": gatewayKey})
	region.waitArrived(t)
	g.cancel() // what SIGTERM does
	g.log.waitFor(t, "aoai-gateway draining")
	waitRefused(t, g.addr)
	a := call(newClient(t), g.addr, map[string]string{"api-key": gatewayKey})
	require.Error(t, a.err, "a new request gets no service while draining")

	select {
	case a := <-pending:
		t.Fatalf("the request in flight ended before the region answered: %v %d %s", a.err, a.status, a.body)
	case err := <-g.done:
		t.Fatalf("run returned with a request in flight: %v", err)
	default:
	}

	region.release()
	a = receive(t, pending)
	assertOK(t, a, "served while draining")
	assert.Equal(t, strconv.Itoa(len(a.body)), a.header.Get("Content-Length"), "the whole body")
	require.NoError(t, g.stop(t))
	log := g.log.String()
	assert.Contains(t, log, "aoai-gateway stopped")
	assert.NotContains(t, log, "drain timed out")
	assert.NotContains(t, log, gatewayKey)
	assert.NotContains(t, log, region.Key)
	assert.Len(t, region.Calls(), 1)
}

// TestDrainTimeout shows that a request still in flight when the drain timeout expires is cut, and run returns.
// With -drain-timeout 0 the drain is over before it began, so the test does not depend on how time passes.
func TestDrainTimeout(t *testing.T) {
	for _, timeout := range []string{"0", "20ms"} {
		t.Run(timeout, func(t *testing.T) {
			isolate(t)
			arrived := make(chan struct{}, 1)
			region := newRegion(t, failovertest.WithOnRequest(func(failovertest.Call) {
				select {
				case arrived <- struct{}{}:
				default:
				}
			}))
			region.Script(failovertest.Hang()) // answers never; ends when the gateway gives up
			const gatewayKey = "gw-secret-7b3e0d1f58"
			setEnv(t, regionEnv(region))
			t.Setenv(EnvGatewayKeys, gatewayKey)
			g := startGateway(t, "-addr", "127.0.0.1:0", "-drain-timeout", timeout)

			pending := inFlight(newClient(t), g.addr, map[string]string{"api-key": gatewayKey})
			select {
			case <-arrived:
			case <-time.After(wait):
				t.Fatal("the request never reached the region")
			}
			require.NoError(t, g.stop(t), "run returns once the drain timed out")
			a := receive(t, pending)
			assert.Error(t, a.err, "the request in flight was cut: %d %s", a.status, a.body)
			log := g.log.String()
			assert.Contains(t, log, "drain timed out")
			assert.Contains(t, log, "aoai-gateway stopped")
		})
	}
}

// TestLogsHoldNoSecrets shows that the log of successful and refused requests holds neither the gateway keys nor
// the region's key, in either log format, and that the gateway key does not go upstream.
func TestLogsHoldNoSecrets(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			isolate(t)
			region := newRegion(t)
			const gatewayKey, otherKey, wrongKey = "gw-secret-2c8f6a0e47", "gw-secret-other-5a1b", "wrong-secret-9e4d"
			setEnv(t, regionEnv(region))
			t.Setenv(EnvGatewayKeys, otherKey+", "+gatewayKey)
			args := []string{"-addr", "127.0.0.1:0"}
			if format == "json" {
				args = append(args, "-json-logs")
			}
			g := startGateway(t, args...)
			c := newClient(t)
			assertOK(t, call(c, g.addr, map[string]string{"api-key": gatewayKey}), "Hello from eastus.")
			assertOK(t, call(c, g.addr, map[string]string{"Authorization": "Bearer " + gatewayKey}), "Hello from eastus.")
			a := call(c, g.addr, map[string]string{"api-key": wrongKey})
			require.NoError(t, a.err)
			assert.Equal(t, http.StatusUnauthorized, a.status)
			for _, path := range []string{"/status", "/metrics"} {
				req, err := http.NewRequest(http.MethodGet, "http://"+g.addr+path, nil)
				require.NoError(t, err)
				req.Header.Set("api-key", gatewayKey)
				resp, err := c.Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode, path)
				for _, secret := range []string{gatewayKey, otherKey, region.Key} {
					assert.NotContains(t, string(body), secret, path)
				}
			}
			require.NoError(t, g.stop(t))

			log := g.log.String()
			assert.Contains(t, log, "aoai-gateway request", "requests are logged")
			for _, secret := range []string{gatewayKey, otherKey, wrongKey, region.Key} {
				assert.NotContains(t, log, secret, "the log holds a secret:\n%s", log)
			}
			calls := region.Calls()
			require.Len(t, calls, 2)
			for _, call := range calls {
				assert.Equal(t, region.Key, call.Header.Get("Api-Key"), "the region's own key goes upstream")
				assert.Empty(t, call.Header.Get("Authorization"), "the caller's bearer key does not")
				for k, v := range call.Header {
					assert.NotContains(t, strings.Join(v, ","), gatewayKey, "header %s", k)
				}
			}
		})
	}
}

// TestSIGTERMDrains runs the command as a process of its own and sends it SIGTERM with a request in flight: the
// request is served to its end, and the process logs its drain and exits 0.
func TestSIGTERMDrains(t *testing.T) {
	isolate(t)
	region := newHoldingRegion(t)
	region.Script(failovertest.OK("served after SIGTERM"))
	const gatewayKey = "gw-secret-6f0a3d9c12"

	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-addr", "127.0.0.1:0", "-drain-timeout", "1m")
	cmd.WaitDelay = wait
	cmd.Dir = t.TempDir() // no ./.env
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !isConfigVar(k) && k != childEnv && k != "GORACE" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Under -race the child would sleep a second before it exits (GORACE's atexit_sleep_ms); it need not.
	cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Env = append(cmd.Env, childEnv+"=1", EnvGatewayKeys+"="+gatewayKey)
	for k, v := range regionEnv(region.Server) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	log := newLogBuffer()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			log.Write(append(s.Bytes(), '\n'))
		}
	}()
	exited := make(chan error, 1)
	t.Cleanup(func() {
		cancel() // kills the child if it is still running
		select {
		case <-exited:
		default:
			<-copied
			_ = cmd.Wait()
		}
	})

	log.waitFor(t, "aoai-gateway listening")
	m := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(log.String())
	require.NotNil(t, m, "the listening line names the address:\n%s", log)
	addr := m[1]

	c := newClient(t)
	pending := inFlight(c, addr, map[string]string{"api-key": gatewayKey})
	region.waitArrived(t)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	log.waitFor(t, "aoai-gateway draining")
	waitRefused(t, addr)
	select {
	case a := <-pending:
		t.Fatalf("the request in flight ended before the region answered: %v %d %s", a.err, a.status, a.body)
	default:
	}

	region.release()
	assertOK(t, receive(t, pending), "served after SIGTERM")
	select {
	case <-copied:
	case <-time.After(wait):
		t.Fatalf("the child did not exit; log:\n%s", log)
	}
	err = cmd.Wait()
	exited <- err
	require.NoError(t, err, "the child exits 0; log:\n%s", log)
	out := log.String()
	assert.Contains(t, out, "aoai-gateway stopped")
	assert.Contains(t, out, "status=200")
	assert.NotContains(t, out, "drain timed out")
	assert.NotContains(t, out, gatewayKey)
	assert.NotContains(t, out, region.Key)
}

// TestTLS serves HTTPS with a certificate made for 127.0.0.1, and refuses plain HTTP on the same port.
func TestTLS(t *testing.T) {
	isolate(t)
	region := newRegion(t)
	setEnv(t, regionEnv(region))
	const gatewayKey = "gw-secret-tls-5a0c2e"
	t.Setenv(EnvGatewayKeys, gatewayKey)
	certPEM, keyPEM := selfSigned(t)
	require.NoError(t, os.WriteFile("cert.pem", certPEM, 0o600))
	require.NoError(t, os.WriteFile("key.pem", keyPEM, 0o600))
	g := startGateway(t, "-addr", "127.0.0.1:0", "-tls-cert", "cert.pem", "-tls-key", "key.pem")

	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(certPEM))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true, ForceAttemptHTTP2: true}
	c := &http.Client{Transport: tr, Timeout: wait}
	req, err := http.NewRequest(http.MethodPost, "https://"+g.addr+chatPath, strings.NewReader(chatBody))
	require.NoError(t, err)
	req.Header.Set("api-key", gatewayKey)
	resp, err := c.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, "Hello from eastus.", content(t, body))
	require.NotNil(t, resp.TLS)
	assert.Equal(t, 2, resp.ProtoMajor, "HTTP/2 is offered over TLS")

	// A stream over HTTP/2, event by event.
	req, err = http.NewRequest(http.MethodPost, "https://"+g.addr+chatPath,
		strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	resp, err = c.Do(req)
	require.NoError(t, err)
	stream, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", stream)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	assert.True(t, strings.HasSuffix(string(stream), "data: [DONE]\n\n"), "%s", stream)

	plain := call(newClient(t), g.addr, map[string]string{"api-key": gatewayKey})
	assert.True(t, plain.err != nil || plain.status == http.StatusBadRequest, "plain HTTP to the TLS port: %v %d", plain.err, plain.status)
	require.NoError(t, g.stop(t))
	assert.Contains(t, g.log.String(), "tls=true")
	assert.Len(t, region.Calls(), 2)
}

// selfSigned makes a certificate and key for 127.0.0.1, valid for an hour, in PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "aoai-gateway test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// TestUsageNamesTheVariablesAndDotEnv: -h names every environment variable the command reads, and says they may
// come from ./.env too, the process environment winning.
func TestUsageNamesTheVariablesAndDotEnv(t *testing.T) {
	log := newLogBuffer()
	require.ErrorIs(t, run(t.Context(), []string{"-h"}, log, nil), flag.ErrHelp)
	usage := log.String()
	for _, want := range []string{"Usage: aoai-gateway [flags]", "from a .env file in the working directory",
		"(the process environment wins)", "-addr", "-insecure-no-auth", "-tls-cert"} {
		assert.Contains(t, usage, want)
	}
	for _, name := range []string{EnvGatewayKeys, failover.EnvEndpoint, failover.EnvAPIKey, failover.EnvRegionName,
		failover.EnvDeployments, failover.EnvAPIVersion, failover.EnvPriority, failover.EnvWeight, failover.EnvAuth,
		failover.EnvOpenAIKey, failover.EnvOpenAIBaseURL, failover.EnvModel, failover.EnvAttemptTimeout,
		failover.EnvStrategy, failover.EnvMaxWait, failover.EnvQuotaSteering, failover.EnvHedgeDelay,
		failover.EnvHedgePercentile, failover.EnvRedisURL, failover.EnvRedisPrefix} {
		assert.Contains(t, usage, "\n  "+name, "the usage lists %s", name)
	}
	assert.NotContains(t, usage, "listening")
}
