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
