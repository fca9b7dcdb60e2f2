package storetest_test

import (
	"io"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/storetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(*testing.T) failover.Store { return new(storetest.Memory) })
}

func TestMemoryClose(t *testing.T) {
	m := new(storetest.Memory)
	now := time.Now()
	rec := failover.Record{Backend: "eastus@0123456789abcdef", Model: "gpt-4o", Kind: failover.RestThrottled,
		Since: now, Until: now.Add(time.Minute)}
	require.NoError(t, m.Save(t.Context(), rec, now))
	var closer io.Closer = m // an optional interface of a Store, found by type assertion
	require.NoError(t, closer.Close())
	_, err := m.Load(t.Context(), []string{rec.Backend}, now)
	assert.ErrorIs(t, err, storetest.ErrClosed, "a closed store answers no call")
	assert.ErrorIs(t, m.Save(t.Context(), rec, now), storetest.ErrClosed)
	assert.Len(t, m.Records(), 1, "the records stay for inspection")
}

// TestMemoryWithoutOwners: Run skips the owner checks for a store that does not implement failover.OwnerStore,
// which is optional; the struct promotes only Memory's failover.Store methods.
func TestMemoryWithoutOwners(t *testing.T) {
	storetest.Run(t, func(*testing.T) failover.Store { return struct{ failover.Store }{new(storetest.Memory)} })
}

func TestMemoryOwnersDownAndClosed(t *testing.T) {
	m := new(storetest.Memory)
	now := time.Now()
	require.NoError(t, m.SaveOwners(t.Context(), []string{"resp_1"}, "eastus@0123456789abcdef", time.Minute, now))
	m.SetDown(true)
	assert.ErrorIs(t, m.SaveOwners(t.Context(), []string{"resp_2"}, "eastus@0123456789abcdef", time.Minute, now), storetest.ErrDown)
	_, err := m.LoadOwner(t.Context(), "resp_1", now)
	assert.ErrorIs(t, err, storetest.ErrDown)
	m.SetDown(false)
	got, err := m.LoadOwner(t.Context(), "resp_1", now)
	require.NoError(t, err)
	assert.Equal(t, "eastus@0123456789abcdef", got, "the owners stay while the store is down")
	got, err = m.LoadOwner(t.Context(), "resp_2", now)
	require.NoError(t, err)
	assert.Empty(t, got, "a save while down saved nothing")
	assert.Equal(t, 5, m.Calls(), "owner calls count, failed ones included")
	require.NoError(t, m.Close())
	_, err = m.LoadOwner(t.Context(), "resp_1", now)
	assert.ErrorIs(t, err, storetest.ErrClosed)
}
