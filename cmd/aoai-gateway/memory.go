package main

import (
	"os"
	"runtime/debug"

	"github.com/aoai-failover/failover/gateway"
)

// softMemoryLimit sets the Go runtime's soft memory limit to twice the bytes the gateway may hold for bodies and
// answers (-max-held-bytes, 192 MiB by default: 384 MiB), unless GOMEMLIMIT sets one, which rules (and then the
// gateway derives its budget from it). Without a limit the garbage collector lets the heap grow to twice what is
// live before it collects: under abuse, at a 256 MiB budget, the peak RSS measured 700 MiB with no limit and 452
// MiB with one of 512 MiB (BENCHMARKS.md). It returns the limit it set (0: GOMEMLIMIT's) and what restores the
// previous one, for the tests, which run the command in their own process.
func softMemoryLimit(o options) (limit int64, restore func()) {
	if os.Getenv("GOMEMLIMIT") != "" { // empty is no limit, as the runtime reads it
		return 0, func() {}
	}
	held := o.maxHeldBytes
	if held == 0 {
		held = max(gateway.DefaultMaxHeldBytes, max(o.maxBody, o.maxUpload)+1) // as gateway.New chooses it
	}
	limit = 2 * held
	previous := debug.SetMemoryLimit(limit)
	return limit, func() { debug.SetMemoryLimit(previous) }
}
