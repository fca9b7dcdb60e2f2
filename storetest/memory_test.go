package storetest_test

import (
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(*testing.T) failover.Store { return new(storetest.Memory) })
}
