package redisstore_test

import (
	"os"
	"testing"

	"github.com/aoai-failover/failover/internal/redistest"
)

// TestMain runs the tests against a real Redis: FAILOVER_TEST_REDIS_URL's (.ci/run starts one), or a
// redis-server of the package's own. Then it checks that no goroutine was left behind.
func TestMain(m *testing.M) {
	os.Exit(redistest.Main(m.Run))
}
