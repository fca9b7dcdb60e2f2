package failover

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Helpers for the package-internal tests of more than one file.

// routedEngine builds the engine of a client with one region per priority given (named r0, r1, …) and weights
// (0: the default), plus an OpenAI fallback when fallback is set.
func routedEngine(t *testing.T, strategy Strategy, fallback bool, priorities, weights []int) *engine {
	t.Helper()
	regions := make([]Region, len(priorities))
	for i := range regions {
		regions[i] = Region{Name: fmt.Sprintf("r%d", i), Endpoint: fmt.Sprintf("https://r%d.openai.azure.com", i),
			APIKey: "key", Priority: priorities[i]}
		if weights != nil {
			regions[i].Weight = weights[i]
		}
	}
	opts := []Option{WithStrategy(strategy)}
	if fallback {
		opts = append(opts, WithOpenAIFallback("sk-key", ""))
	}
	c, err := New(regions, opts...)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return c.engine
}

// backendNames are the names of bs, in order.
func backendNames(bs []*backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.name
	}
	return out
}

// chunkedBody is an upstream body that arrives in pieces of at most size bytes (all at once when size is 0) and
// ends with end: io.EOF, or the error of a connection that broke. It has no WriteTo, so io.Copy and the like read
// it piece by piece.
type chunkedBody struct {
	data   []byte
	size   int
	end    error
	closed bool
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, b.end
	}
	n := len(p)
	if b.size > 0 {
		n = min(n, b.size)
	}
	n = copy(p[:n], b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *chunkedBody) Close() error { b.closed = true; return nil }

// isolateEnv runs the test in an empty directory with none of the library's variables set in the process
// environment (an empty variable counts as unset).
func isolateEnv(t *testing.T) string {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AZURE_OPENAI_") || strings.HasPrefix(k, "OPENAI_") || strings.HasPrefix(k, "FAILOVER_") {
			t.Setenv(k, "")
		}
	}
	dir := t.TempDir()
	t.Chdir(dir)
	return dir
}

// IsolateEnv is isolateEnv for the package's external tests (failover_test), which cannot see unexported
// helpers; it exists only in test builds.
var IsolateEnv = isolateEnv
