package gateway

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A panic on the fresh stack is raised again on the handler's goroutine, where net/http recovers it (and
// http.ErrAbortHandler keeps its meaning) rather than crashing the gateway.
func TestOnFreshStackRaisesAPanicOnTheCaller(t *testing.T) {
	recovered := func() (p any) {
		defer func() { p = recover() }()
		onFreshStack(func() { panic(http.ErrAbortHandler) })
		return nil
	}()
	assert.Equal(t, http.ErrAbortHandler, recovered)

	ran := false
	onFreshStack(func() { ran = true })
	assert.True(t, ran, "f ran, and was done when onFreshStack returned")
}
