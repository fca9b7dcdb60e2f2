package redisstore_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/aoai-failover/failover/internal/redistest"
)

// TestMain runs the tests against a real Redis: FAILOVER_TEST_REDIS_URL's (.ci/run starts one), or a
// redis-server of the package's own. Then it checks that no goroutine was left behind.
func TestMain(m *testing.M) {
	code := redistest.Main(m.Run)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
