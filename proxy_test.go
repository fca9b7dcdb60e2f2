package failover_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests send attempts through an HTTPS proxy (CONNECT) on loopback to fake regions served over TLS on
// loopback, with httptest's certificate (valid for example.com and 127.0.0.1). The proxy decides where a CONNECT
// target is and dials only loopback.
//
// The default client's test runs in a child process without DNS and reaches https://example.com only through the
// proxy. The in-process tests configure the regions at their own loopback addresses instead: the proxy of a
// caller's client (http.ProxyURL) tunnels even those, which neither the default transport nor
// http.ProxyFromEnvironment ever does, so a CONNECT to a region proves the caller's client carried the attempt;
// and were it ignored, the attempt would still stay on loopback (and fail, not trusting the certificate).

// proxyKey is the api-key of the proxied regions: distinctive, so that finding it anywhere means it leaked.
const proxyKey = "prx-K3y-5e6f2a91c4d8b7e0-must-stay-inside-tls"

// connectRequest is what the proxy saw of one request to it.
type connectRequest struct {
	Method string
	Target string // the CONNECT target, host:port
	Header http.Header
	Dump   []byte // the request as it arrived, headers and all
}

// connectProxy is an HTTPS proxy: it answers CONNECT for the targets in its routes by tunnelling to the routed
// address, and records every request and every byte sent from the client into its tunnels.
type connectProxy struct {
	URL *url.URL

	routes map[string]string   // CONNECT target → address dialed
	hang   map[string]struct{} // CONNECT targets never answered
	srv    *httptest.Server
	done   chan struct{}
	wg     sync.WaitGroup // the tunnels' copying goroutines

	mu       sync.Mutex
	requests []connectRequest
	sent     bytes.Buffer // client → server bytes of every tunnel: TLS records, if all is well
	conns    map[net.Conn]struct{}
}

// startProxy starts a CONNECT proxy on loopback. routes maps a CONNECT target (such as "example.com:443") to the
// loopback address to tunnel to; a CONNECT to a target in hang is read and never answered. Everything the proxy
// started ends when the test does.
func startProxy(t *testing.T, routes map[string]string, hang ...string) *connectProxy {
	t.Helper()
	p := &connectProxy{routes: routes, hang: map[string]struct{}{}, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	for _, h := range hang {
		p.hang[h] = struct{}{}
	}
	p.srv = httptest.NewServer(p)
	u, err := url.Parse(p.srv.URL)
	require.NoError(t, err)
	p.URL = u
	t.Cleanup(func() {
		close(p.done) // unblocks hanging CONNECTs
		p.mu.Lock()
		for c := range p.conns {
			c.Close() // ends the tunnels' copies
		}
		p.mu.Unlock()
		p.srv.Close()
		p.wg.Wait()
	})
	return p
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	dump, _ := httputil.DumpRequest(r, false)
	p.mu.Lock()
	p.requests = append(p.requests, connectRequest{Method: r.Method, Target: r.Host, Header: r.Header.Clone(), Dump: dump})
	p.mu.Unlock()
	if r.Method != http.MethodConnect {
		http.Error(w, "this proxy only tunnels (CONNECT)", http.StatusMethodNotAllowed)
		return
	}
	if _, ok := p.hang[r.Host]; ok {
		select {
		case <-r.Context().Done():
		case <-p.done:
		}
		return
	}
	addr, ok := p.routes[r.Host]
	if !ok {
		http.Error(w, "no route to "+r.Host, http.StatusBadGateway)
		return
	}
	if !isLoopbackAddr(addr) {
		http.Error(w, "only loopback is reachable in tests", http.StatusForbidden)
		return
	}
	backend, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		backend.Close()
		return
	}
	if !p.track(client, backend) {
		return
	}
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		client.Close()
		backend.Close()
		return
	}
	closeBoth := func() {
		client.Close()
		backend.Close()
		p.untrack(client, backend)
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		defer closeBoth()
		// brw.Reader may hold bytes the client sent right after its CONNECT.
		_, _ = io.Copy(backend, io.TeeReader(io.MultiReader(brw.Reader, client), lockedWriter{p}))
	}()
	go func() {
		defer p.wg.Done()
		defer closeBoth()
		_, _ = io.Copy(client, backend)
	}()
}

// track registers a tunnel's connections for the cleanup to close; it closes them and reports false if the
// proxy is already shutting down.
func (p *connectProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		for _, c := range conns {
			c.Close()
		}
		return false
	default:
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *connectProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
	}
}

type lockedWriter struct{ p *connectProxy }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.sent.Write(b)
}

func (p *connectProxy) seen() []connectRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]connectRequest(nil), p.requests...)
}

func (p *connectProxy) tunnelled() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.sent.Bytes())
}

// targets lists the CONNECT targets the proxy was asked for, in order.
func (p *connectProxy) targets() []string {
	var ts []string
	for _, r := range p.seen() {
		ts = append(ts, r.Method+" "+r.Target)
	}
	return ts
}

// direct routes CONNECTs to each server's own address.
func direct(servers ...*httptest.Server) map[string]string {
	routes := make(map[string]string, len(servers))
	for _, s := range servers {
		routes[addr(s)] = addr(s)
	}
	return routes
}

// addr is a server's host:port, as a CONNECT to it names it.
func addr(s *httptest.Server) string { return s.Listener.Addr().String() }

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// tlsRegion starts a fake region served over TLS on loopback, with httptest's certificate (valid for example.com
// and 127.0.0.1).
func tlsRegion(t *testing.T, name string, opts ...failovertest.Option) (*failovertest.Server, *httptest.Server) {
	t.Helper()
	region := failovertest.NewRegion(name, append([]failovertest.Option{failovertest.WithKey(proxyKey)}, opts...)...)
	srv := httptest.NewUnstartedServer(region)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected in one test
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(region.Close) // runs first: ends hanging replies, so that srv.Close does not wait for them
	return region, srv
}

// proxiedClient is a caller's own *http.Client: it trusts only httptest's certificate and sends everything through
// proxy, loopback included.
func proxiedClient(t *testing.T, srv *httptest.Server, proxy *connectProxy) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	transport := &http.Transport{
		Proxy:           http.ProxyURL(proxy.URL),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
}

// assertKeyNotInProxy checks that the proxy saw the key in none of its requests and in none of the bytes it
// tunnelled, and that it was given no credentials at all.
func assertKeyNotInProxy(t *testing.T, proxy *connectProxy) {
	t.Helper()
	for _, r := range proxy.seen() {
		assert.Empty(t, r.Header.Values("Api-Key"), "the api-key is not a proxy header")
		assert.Empty(t, r.Header.Values("Authorization"))
		assert.Empty(t, r.Header.Values("Proxy-Authorization"))
		assert.NotContains(t, string(r.Dump), proxyKey, "the key is nowhere in the proxy's request")
	}
	sent := proxy.tunnelled()
	require.NotEmpty(t, sent, "bytes went through the tunnel")
	assert.Equal(t, byte(0x16), sent[0], "the tunnel starts with a TLS handshake record")
	assert.NotContains(t, string(sent), proxyKey, "the key crosses the proxy only inside TLS")
}

const proxyChildEnv = "FAILOVER_PROXY_CHILD"

// TestDefaultClientUsesProxyFromEnvironment shows that a client built without WithHTTPClient sends through the
// HTTPS_PROXY of the environment. net/http reads the proxy variables once per process, so the test runs itself
// again as a child process with the variables set; the parent runs the proxy and the region and checks what they
// saw.
func TestDefaultClientUsesProxyFromEnvironment(t *testing.T) {
	if os.Getenv(proxyChildEnv) == "1" {
		proxyChild(t)
		return
	}
	region, srv := tlsRegion(t, "eastus")
	proxy := startProxy(t, map[string]string{"example.com:443": addr(srv)})

	dir := t.TempDir()
	certFile := filepath.Join(dir, "httptest.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	noCerts := t.TempDir() // SSL_CERT_DIR: trust nothing else, not even the system's roots

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDefaultClientUsesProxyFromEnvironment$", "-test.count=1", "-test.v")
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(environWithout("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD",
		"SSL_CERT_FILE", "SSL_CERT_DIR", proxyChildEnv),
		proxyChildEnv+"=1", "HTTPS_PROXY="+proxy.URL.String(), "SSL_CERT_FILE="+certFile, "SSL_CERT_DIR="+noCerts)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the child failed:\n%s", out)
	assert.Contains(t, string(out), "--- PASS: TestDefaultClientUsesProxyFromEnvironment", "the child ran the test:\n%s", out)

	targets := proxy.targets()
	require.NotEmpty(t, targets, "the request went through the proxy")
	for _, target := range targets {
		assert.Equal(t, "CONNECT example.com:443", target, "the proxy is asked only to tunnel to the region")
	}
	assertKeyNotInProxy(t, proxy)
	calls := region.Calls()
	require.Len(t, calls, 1, "the region behind the proxy served the request")
	assert.True(t, calls[0].Authorized)
	assert.Equal(t, proxyKey, calls[0].Header.Get("Api-Key"))
	assert.Equal(t, "chat/completions", calls[0].Operation)
}

// proxyChild is the child's half of TestDefaultClientUsesProxyFromEnvironment: one request with the default
// client to https://example.com, which only the proxy can reach.
func proxyChild(t *testing.T) {
	// No name lookups: a client that ignored the proxy would fail here instead of reaching the real example.com.
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test: only the proxy may be dialed")
	}}
	req, err := http.NewRequest(http.MethodPost, "https://example.com/openai/deployments/gpt-4o/chat/completions", nil)
	require.NoError(t, err)
	proxyURL, err := http.ProxyFromEnvironment(req)
	require.NoError(t, err)
	require.NotNil(t, proxyURL, "the parent set HTTPS_PROXY")
	require.Equal(t, "127.0.0.1", proxyURL.Hostname(), "the proxy is on loopback")

	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: "https://example.com", APIKey: proxyKey}},
		failover.WithModel("gpt-4o"), failover.WithMaxWait(0)) // WithMaxWait(0): fail at once, not retry
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var rec recorder
	content, err := client.ChatCompletion(rec.context(ctx), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from eastus.", content)
	assert.Equal(t, []string{"eastus"}, rec.regions())
}

// environWithout is the process environment without the named variables, in any case.
func environWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || strings.EqualFold(k, n)
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}

// TestCustomHTTPClientIsUsed shows that WithHTTPClient's client, with its own roots and its own proxy, carries
// the attempts.
func TestCustomHTTPClientIsUsed(t *testing.T) {
	region, srv := tlsRegion(t, "eastus")
	proxy := startProxy(t, direct(srv))
	custom := proxiedClient(t, srv, proxy)
	regions := []failover.Region{{Name: "eastus", Endpoint: srv.URL, APIKey: proxyKey}}
	client := newClient(t, regions, failover.WithHTTPClient(custom))

	var rec recorder
	content, err := client.ChatCompletion(rec.context(t.Context()), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from eastus.", content)
	assert.Equal(t, []string{"eastus"}, rec.regions())
	targets := proxy.targets()
	require.NotEmpty(t, targets)
	for _, target := range targets {
		assert.Equal(t, "CONNECT "+addr(srv), target, "only the caller's proxy tunnels to loopback")
	}
	assertKeyNotInProxy(t, proxy)
	calls := region.Calls()
	require.Len(t, calls, 1)
	assert.True(t, calls[0].Authorized)

	t.Run("its TLS settings matter", func(t *testing.T) {
		// The same client without the test's root: the region's certificate is refused, so the roots above are
		// what made the first request succeed.
		transport := custom.Transport.(*http.Transport).Clone()
		transport.TLSClientConfig = &tls.Config{RootCAs: x509.NewCertPool()}
		t.Cleanup(transport.CloseIdleConnections)
		untrusting := newClient(t, regions, failover.WithHTTPClient(&http.Client{Transport: transport}), failover.WithMaxWait(0))
		var rec recorder
		_, err := untrusting.ChatCompletion(rec.context(t.Context()), hello())
		require.ErrorIs(t, err, failover.ErrExhausted)
		var unknown x509.UnknownAuthorityError
		assert.ErrorAs(t, rec.first().Err, &unknown, "the certificate was checked against the client's roots")
		assert.Len(t, region.Calls(), 1, "nothing more reached the region")
	})
}

// TestAttemptTimeoutAppliesToCustomHTTPClient shows that the attempt timeout bounds attempts made with a caller's
// client, even one without a timeout of its own, whether the region or the proxy hangs. Real time, on loopback.
func TestAttemptTimeoutAppliesToCustomHTTPClient(t *testing.T) {
	const attemptTimeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name       string
		hangRegion bool // eastus answers nothing
		hangProxy  bool // the proxy never answers the CONNECT to eastus
	}{
		{name: "region hangs", hangRegion: true},
		{name: "proxy hangs on CONNECT", hangProxy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eastus, east := tlsRegion(t, "eastus")
			westus, west := tlsRegion(t, "westus")
			if tc.hangRegion {
				eastus.Script(failovertest.Hang())
			}
			var hang []string
			if tc.hangProxy {
				hang = append(hang, addr(east))
			}
			proxy := startProxy(t, direct(east, west), hang...)
			custom := proxiedClient(t, east, proxy)
			require.Zero(t, custom.Timeout, "the caller's client sets no timeout of its own")
			client := newClient(t, []failover.Region{
				{Name: "eastus", Endpoint: east.URL, APIKey: proxyKey},
				{Name: "westus", Endpoint: west.URL, APIKey: proxyKey},
			}, failover.WithHTTPClient(custom), failover.WithAttemptTimeout(attemptTimeout))

			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			var rec recorder
			start := time.Now()
			content, err := client.ChatCompletion(rec.context(ctx), hello())
			elapsed := time.Since(start)
			require.NoError(t, err)
			assert.Equal(t, "Hello from westus.", content)
			assert.Less(t, elapsed, 10*time.Second, "the hung attempt was cut at the attempt timeout")
			require.Equal(t, []string{"eastus", "westus"}, rec.regions())
			first := rec.first()
			assert.ErrorIs(t, first.Err, failover.ErrAttemptTimeout)
			assert.NotErrorIs(t, first.Err, context.DeadlineExceeded)
			assert.Equal(t, failover.OutcomeFailedOver, first.Outcome)
			assert.GreaterOrEqual(t, first.Duration, attemptTimeout)
			assert.Less(t, first.Duration, 5*time.Second)
			assert.Equal(t, failover.OutcomeServed, rec.last().Outcome)
			assert.Contains(t, proxy.targets(), "CONNECT "+addr(east), "eastus was tried through the proxy")
			assert.Contains(t, proxy.targets(), "CONNECT "+addr(west))
			if tc.hangRegion {
				assert.Equal(t, 1, eastus.Requests(), "the hung region had received the request")
			} else {
				assert.Zero(t, eastus.Requests(), "the tunnel to eastus was never opened")
			}
			assert.Equal(t, 1, westus.Requests())
		})
	}
}

// TestCustomHTTPClientRedirectsAreNotFollowed shows that a redirect is not followed through a caller's client
// whose CheckRedirect would follow it, and that New leaves that client as it was. Unlike
// TestRedirectsAreNotFollowed (a bare &http.Client{}), the client here has its own CheckRedirect, TLS and proxy.
func TestCustomHTTPClientRedirectsAreNotFollowed(t *testing.T) {
	eastus, east := tlsRegion(t, "eastus")
	westus, west := tlsRegion(t, "westus")
	thief, thiefSrv := tlsRegion(t, "thief")
	proxy := startProxy(t, direct(east, west, thiefSrv))
	redirect := failovertest.Reply{Status: http.StatusTemporaryRedirect, Header: http.Header{
		"Location": {thiefSrv.URL + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"}}}
	eastus.Script(redirect)

	custom := proxiedClient(t, east, proxy)
	var followed []string
	var followedMu sync.Mutex
	custom.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		followedMu.Lock()
		defer followedMu.Unlock()
		followed = append(followed, req.URL.String())
		return nil // follow, with the headers, wherever it points
	}
	client := newClient(t, []failover.Region{
		{Name: "eastus", Endpoint: east.URL, APIKey: proxyKey},
		{Name: "westus", Endpoint: west.URL, APIKey: proxyKey},
	}, failover.WithHTTPClient(custom))

	var rec recorder
	content, err := client.ChatCompletion(rec.context(t.Context()), hello())
	require.NoError(t, err)
	assert.Equal(t, "Hello from westus.", content)
	require.Equal(t, []string{"eastus", "westus"}, rec.regions())
	assert.Equal(t, http.StatusTemporaryRedirect, rec.first().Status)
	assert.Equal(t, failover.OutcomeFailedOver, rec.first().Outcome)
	assert.Zero(t, thief.Requests(), "nothing, and so no api-key, reached the redirect's target")
	assert.NotContains(t, proxy.targets(), "CONNECT "+addr(thiefSrv))
	followedMu.Lock()
	assert.Empty(t, followed, "the caller's CheckRedirect was never consulted")
	followedMu.Unlock()
	assert.Equal(t, 1, westus.Requests())

	t.Run("the caller's client is unchanged and would follow", func(t *testing.T) {
		// Control: the same client used directly follows the redirect to the thief, so the assertions above
		// would have caught a followed redirect; and New did not overwrite the caller's CheckRedirect.
		eastus.Script(redirect)
		body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			east.URL+"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Api-Key", proxyKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := custom.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, 1, thief.Requests(), "the redirect was followed to the thief")
		followedMu.Lock()
		assert.Len(t, followed, 1)
		followedMu.Unlock()
	})
}

// TestPlainHTTPOnlyForTrueLoopbackHosts adds, to the plain-http cases of TestNewRejectsBadConfig and
// TestNewAcceptsGoodConfig, hosts that only look like loopback.
func TestPlainHTTPOnlyForTrueLoopbackHosts(t *testing.T) {
	for _, endpoint := range []string{
		"http://example.com",
		"http://localhost.example.com",
		"http://127.0.0.1.example.com",
		"http://0.0.0.0:8080",
		"http://[::]:8080",
		"http://10.0.0.1",
	} {
		t.Run(endpoint, func(t *testing.T) {
			client, err := failover.New([]failover.Region{{Name: "r", Endpoint: endpoint, APIKey: secretKey}})
			require.Error(t, err)
			assert.Nil(t, client)
			assert.ErrorIs(t, err, failover.ErrConfig)
			var cfgErr *failover.ConfigError
			require.ErrorAs(t, err, &cfgErr)
			assert.Equal(t, "regions[0].Endpoint", cfgErr.Field)
			assert.Contains(t, cfgErr.Problem, "must use https")
		})
	}
	for _, endpoint := range []string{"http://127.0.0.2:8080", "http://LOCALHOST:8080", "http://[::1]"} {
		t.Run(endpoint, func(t *testing.T) {
			client, err := failover.New([]failover.Region{{Name: "r", Endpoint: endpoint, APIKey: secretKey}})
			require.NoError(t, err)
			client.CloseIdleConnections()
		})
	}
}
