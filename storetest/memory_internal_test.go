package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOwnersAreBounded: past its bound, Memory forgets the owner that ends soonest, the oldest saved among
// those that end together, and never the one being saved.
func TestOwnersAreBounded(t *testing.T) {
	m := &Memory{maxOwners: 3}
	ctx, now := t.Context(), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	save := func(id string, ttl time.Duration) {
		t.Helper()
		require.NoError(t, m.SaveOwners(ctx, []string{id}, "east@"+id, ttl, now))
	}
	loaded := func() []string {
		t.Helper()
		var ids []string
		for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
			backend, err := m.LoadOwner(ctx, id, now)
			require.NoError(t, err)
			if backend != "" {
				require.Equal(t, "east@"+id, backend)
				ids = append(ids, id)
			}
		}
		return ids
	}
	save("a", time.Hour)
	save("b", time.Minute)
	save("c", time.Hour)
	save("d", 2*time.Hour)
	assert.Equal(t, []string{"a", "c", "d"}, loaded(), "b ended soonest")
	save("e", time.Hour)
	assert.Equal(t, []string{"c", "d", "e"}, loaded(), "a and c end together; a was saved first")
	save("c", 3*time.Hour) // a replacement does not count twice
	assert.Equal(t, []string{"c", "d", "e"}, loaded())
	save("f", time.Second)
	assert.Equal(t, []string{"c", "d", "f"}, loaded(), "the owner being saved stays, though it ends soonest")
	assert.Len(t, m.owners, 3)
	assert.Len(t, m.ownerByID, 3)
}

// TestOwnersEndedAreForgotten: a save forgets the owners that have ended at its now, so that ended owners do not
// push live ones out.
func TestOwnersEndedAreForgotten(t *testing.T) {
	m := new(Memory)
	ctx, now := t.Context(), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 100 {
		require.NoError(t, m.SaveOwners(ctx, []string{fmt.Sprint("resp_", i)}, "east@1", time.Second, now))
	}
	require.NoError(t, m.SaveOwners(ctx, []string{"resp_last"}, "east@1", time.Minute, now.Add(time.Second)))
	assert.Len(t, m.owners, 1)
	assert.Len(t, m.ownerByID, 1)
	require.NoError(t, m.SaveOwners(ctx, []string{"resp_last"}, "east@1", 0, now.Add(time.Second)))
	assert.Empty(t, m.owners, "a save with no ttl leaves nothing")
	assert.Empty(t, m.ownerByID)
}

// TestOwnersDefaultBound: the zero Memory keeps MaxOwners owners.
func TestOwnersDefaultBound(t *testing.T) {
	if testing.Short() {
		t.Skip("saves MaxOwners owners")
	}
	m := new(Memory)
	ctx, now := t.Context(), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range MaxOwners + 10 {
		require.NoError(t, m.SaveOwners(ctx, []string{fmt.Sprint("resp_", i)}, "east@1", time.Hour+time.Duration(i), now))
	}
	assert.Len(t, m.owners, MaxOwners)
	got, err := m.LoadOwner(ctx, "resp_9", now)
	require.NoError(t, err)
	assert.Empty(t, got, "the first saved, ending soonest, went")
	got, err = m.LoadOwner(ctx, "resp_10", now)
	require.NoError(t, err)
	assert.Equal(t, "east@1", got)
}
