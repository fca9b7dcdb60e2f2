package gateway_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawRequest opens a connection to the gateway at url (an httptest server's) and sends head, the request line and
// headers, then part, the start of a body it never finishes.
func rawRequest(t *testing.T, url, head, part string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, head+part)
	require.NoError(t, err)
	return conn
}

// A body that stalls is answered 408 and its connection closed within BodyReadTimeout and a second: before,
// net/http drained the rest of the body (up to 256 KiB) with no deadline before sending the 408, so neither the
// answer nor the connection's end came while the caller held the connection open.
func TestStalledBodyIsAnsweredAndItsConnectionClosed(t *testing.T) {
	const bodyTimeout = 200 * time.Millisecond
	f := startFleet(t, []string{"eastus"}, gateway.Config{BodyReadTimeout: bodyTimeout})
	start := time.Now()
	conn := rawRequest(t, f.url, "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\napi-key: "+gatewayKey+
		"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", `{"model":"gpt-4o","messages":[`)
	require.NoError(t, conn.SetReadDeadline(start.Add(5*time.Second))) // bounds the test when the answer never comes

	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, nil)
	require.NoError(t, err, "no answer to a stalled body after %s; BodyReadTimeout is %s", time.Since(start), bodyTimeout)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode)

	_, err = reader.ReadByte()
	assert.True(t, errors.Is(err, io.EOF), "the server closes the connection after the 408, got %v", err)
	assert.Less(t, time.Since(start), bodyTimeout+time.Second, "408 and close within BodyReadTimeout + 1 s")
}
