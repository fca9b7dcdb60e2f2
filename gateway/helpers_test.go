package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/require"
)

// gatewayKey is what callers present; it must never reach a region or a log.
const gatewayKey = "gwkey-3b9f17c2d4e8a6"

// fleet is fake regions behind a client behind a gateway on a loopback port.
type fleet struct {
	regions []*failovertest.Server
	client  *failover.Client
	gateway *gateway.Gateway
	url     string
}

// startFleet starts one fake region per name, each with its own deployment names (chat-<name>, embed-<name>),
// and a gateway in front of them that admits gatewayKey. cfg.Keys defaults to gatewayKey.
func startFleet(t *testing.T, names []string, cfg gateway.Config, opts ...failover.Option) *fleet {
	t.Helper()
	f := &fleet{}
	var regions []failover.Region
	for _, name := range names {
		s := failovertest.NewRegion(name)
		t.Cleanup(s.Close)
		f.regions = append(f.regions, s)
		regions = append(regions, failover.Region{Name: name, Endpoint: s.URL, APIKey: s.Key, APIVersion: "2024-10-21",
			Deployments: map[string]string{"gpt-4o": "chat-" + name, "text-embedding-3-small": "embed-" + name}})
	}
	client, err := failover.New(regions, append([]failover.Option{failover.WithMaxWait(0)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	if cfg.Keys == nil && !cfg.AllowNoAuth {
		cfg.Keys = []string{gatewayKey}
	}
	f.client = client
	f.gateway, err = gateway.New(client, cfg)
	require.NoError(t, err)
	f.url = serveThroughListener(t, f.gateway)
	return f
}

// serveThroughListener serves gw on a loopback port through its Listener, as cmd/aoai-gateway does (streams on
// its plain HTTP/1.1 connections are taken over: see gateway.Listener), and returns its URL.
func serveThroughListener(t *testing.T, gw *gateway.Gateway) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(gw)
	srv.Listener = gw.Listener(srv.Listener)
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, gw.Shutdown(context.Background()))
	})
	return srv.URL
}

// modes are the two ways callers reach the gateway: go-openai configured for Azure (api-key header,
// /openai/deployments/… paths) and for OpenAI (Authorization: Bearer, /v1/… paths).
var modes = []struct {
	name string
	api  func(url, key string) *openai.Client
}{
	{"azure", func(url, key string) *openai.Client {
		cfg := openai.DefaultAzureConfig(key, url)
		cfg.APIVersion = "2023-05-15" // the gateway's regions use their own
		return openai.NewClientWithConfig(cfg)
	}},
	{"openai", func(url, key string) *openai.Client {
		cfg := openai.DefaultConfig(key)
		cfg.BaseURL = url + "/v1"
		return openai.NewClientWithConfig(cfg)
	}},
}

func chatRequest() openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{Model: "gpt-4o",
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}}}
}

// post sends body to the gateway's path with headers, and returns the answer with its body read.
func post(t *testing.T, url, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b strings.Builder
	_, err = io.Copy(&b, resp.Body)
	require.NoError(t, err)
	return resp, b.String()
}

// noKeyUpstream fails the test if any region saw the gateway key in any header or body.
func noKeyUpstream(t *testing.T, f *fleet) {
	t.Helper()
	for _, s := range f.regions {
		for _, c := range s.Calls() {
			require.NotContains(t, string(c.Body), gatewayKey)
			for k, vs := range c.Header {
				for _, v := range vs {
					require.NotContains(t, v, gatewayKey, "header %s at %s", k, s.Name)
				}
			}
		}
	}
}

// frontRegion serves handler as a region (key regionKey) behind a client and a gateway that admits gatewayKey, all
// on loopback, and returns the client and the gateway's URL.
func frontRegion(t *testing.T, regionKey string, handler http.Handler) (*failover.Client, string) {
	t.Helper()
	region := httptest.NewServer(handler)
	t.Cleanup(region.Close)
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: region.URL, APIKey: regionKey}},
		failover.WithMaxWait(0))
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	gw, err := gateway.New(client, gateway.Config{Keys: []string{gatewayKey}})
	require.NoError(t, err)
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return client, srv.URL
}

// netFleet is startFleet on failovertest's in-memory network, for tests in a synctest bubble: fake regions, a
// client and a gateway (cfg.Keys defaults to gatewayKey unless cfg.AllowNoAuth), stopped when the test ends.
type netFleet struct {
	network *failovertest.Network
	regions []*failovertest.Server
	gateway *gateway.Gateway
	url     string
}

func startNetFleet(t *testing.T, names []string, cfg gateway.Config, opts ...failover.Option) *netFleet {
	t.Helper()
	f := &netFleet{network: failovertest.NewNetwork()}
	t.Cleanup(f.network.Close)
	var regions []failover.Region
	for _, name := range names {
		s := failovertest.NewRegion(name, failovertest.OnNetwork(f.network))
		t.Cleanup(s.Close)
		f.regions = append(f.regions, s)
		regions = append(regions, failover.Region{Name: name, Endpoint: s.URL, APIKey: s.Key})
	}
	client, err := failover.New(regions, append([]failover.Option{failover.WithHTTPClient(f.network.Client())}, opts...)...)
	require.NoError(t, err)
	if cfg.Keys == nil && !cfg.AllowNoAuth {
		cfg.Keys = []string{gatewayKey}
	}
	gw, err := gateway.New(client, cfg)
	require.NoError(t, err)
	f.gateway = gw
	url, stop := f.network.Serve(gw)
	t.Cleanup(stop)
	f.url = url
	return f
}

// streamText reads a stream to its end and returns the text of its deltas; any error but the end fails the test.
func streamText(t *testing.T, stream *openai.ChatCompletionStream) string {
	t.Helper()
	text, err := failovertest.ReadStream(stream)
	require.NoError(t, err)
	return text
}
