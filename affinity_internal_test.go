package failover

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestOwnersForgetTheOldestBeyondTheirBound: past maxOwners ids, the oldest learned are forgotten first; an id
// learned again is as new; ids learned over and over do not grow the eviction list without bound.
func TestOwnersForgetTheOldestBeyondTheirBound(t *testing.T) {
	east, west := &backend{name: "eastus"}, &backend{name: "westus"}
	o := newOwners(nil)
	ctx := t.Context()
	o.learn(ctx, east, "resp_first", "resp_second")
	o.learn(ctx, west, "resp_first") // made again elsewhere, say: the later word stands, and is new
	for i := range maxOwners - 1 {
		o.learn(ctx, east, fmt.Sprintf("resp_%d", i))
	}
	assert.Len(t, o.byID, maxOwners)
	assert.Nil(t, o.find(ctx, "resp_second", false), "the oldest went first")
	assert.Same(t, west, o.find(ctx, "resp_first", false), "learned again, so kept")
	assert.Same(t, east, o.find(ctx, fmt.Sprintf("resp_%d", maxOwners-2), false))

	for range 3 * maxOwners {
		o.learn(ctx, west, "resp_again")
	}
	assert.LessOrEqual(t, len(o.learned)-o.head, 2*maxOwners+1, "the list of learned ids stays bounded")
	assert.Same(t, west, o.find(ctx, "resp_again", false))
}

// TestOwnersExpire: an id is remembered for ownerTTL.
func TestOwnersExpire(t *testing.T) {
	b := &backend{name: "eastus"}
	o := newOwners(nil)
	o.learn(t.Context(), b, "resp_1")
	o.mu.Lock()
	w := o.byID["resp_1"]
	w.until = time.Now().Add(-time.Second)
	o.byID["resp_1"] = w
	o.mu.Unlock()
	assert.Nil(t, o.find(t.Context(), "resp_1", false))
}

// TestStoredRefs: what a Responses create names of stored state.
func TestStoredRefs(t *testing.T) {
	cases := []struct {
		body      string
		ids       []string
		encrypted bool
	}{
		{`{"model":"gpt-4o","input":"hi"}`, nil, false},
		{`{"model":"gpt-4o","input":"hi","previous_response_id":"resp_1"}`, []string{"resp_1"}, false},
		{`{"input":[{"type":"item_reference","id":"msg_1"},{"role":"user","content":"id"}],"model":"m"}`, []string{"msg_1"}, false},
		{`{"input":[{"type":"reasoning","encrypted_content":"gAAA","summary":[]}]}`, nil, true},
		{`{"input":"x","conversation":"conv_1"}`, []string{"conv_1"}, false},
		{`{"input":"x","conversation":{"id":"conv_2"}}`, []string{"conv_2"}, false},
		{`{"input":"say \"id\": 1"}`, nil, false},
		{`not json "previous_response_id"`, nil, false},
	}
	for _, tc := range cases {
		ids, encrypted := storedRefs([]byte(tc.body))
		assert.Equal(t, tc.ids, ids, tc.body)
		assert.Equal(t, tc.encrypted, encrypted, tc.body)
	}
}
