package redisstore_test

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/aoai-failover/failover/internal/redistest"
	"github.com/aoai-failover/failover/redisstore"
)

// prefix is a key prefix of the test's own, so that tests sharing one Redis never see each other's keys.
func prefix(t testing.TB) string {
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	return "test-" + name + "-" + rand.Text()[:8]
}

// open opens a Store on the tests' Redis under the test's own prefix, closed when the test ends.
func open(t testing.TB, url, prefix string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(url, prefix)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func redisURL(t testing.TB) string { return redistest.URL(t) }
