package gateway_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A region that echoes its key in a header the gateway passes on (x-ms-*) in an answer it serves: the caller got
// the key, as only failed answers' headers were scrubbed. Served answers', JSON and streams, are now too.
func TestGatewayServedHeadersHoldNoRegionKey(t *testing.T) {
	f := startFleet(t, []string{"eastus"}, gateway.Config{})
	key := f.regions[0].Key
	echo := http.Header{"X-Ms-Echo": {"api-key: " + key},
		"X-Ms-Basic": {"Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+key+"-and-more"))}}
	for _, stream := range []string{"", `,"stream":true`} {
		f.regions[0].Script(failovertest.Reply{Header: echo})
		resp, body := post(t, f.url, "/v1/chat/completions",
			`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]`+stream+`}`, map[string]string{"api-key": gatewayKey})
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.NotEmpty(t, resp.Header.Get("X-Ms-Echo"), "the header is passed on")
		for name, values := range resp.Header {
			assert.NotContains(t, strings.Join(values, " "), key, "%s (stream: %q)", name, stream)
		}
		assert.Contains(t, resp.Header.Get("X-Ms-Echo"), "[REDACTED]")
	}
}
