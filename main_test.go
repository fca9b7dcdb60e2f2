package failover_test

import (
	"os"
	"testing"

	"github.com/aoai-failover/failover/internal/redistest"
)

// TestMain gives the chaos soak a real Redis (FAILOVER_TEST_REDIS_URL's, or a redis-server of the package's own),
// and fails the package if a goroutine outlives its tests.
func TestMain(m *testing.M) {
	os.Exit(redistest.Main(m.Run))
}
