package gateway

import (
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
)

// HOLDS (kept as a check). After Close, Accept returns an error and never a connection the accept goroutine had
// accepted before Close: Close wakes acceptLoop's select with l.closed (it closes the connection it held), so a
// later Accept finds no sender. 100 rounds, each a fresh listener.
func TestReview2AcceptAfterCloseReturnsErrClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		handedOut := 0
		for range 100 {
			g := &Gateway{cfg: Config{MaxConnections: 4}, metrics: newMetrics(), conns: &connTable{}}
			inner := newPipeListener()
			ln := g.Listener(inner)
			first := inner.dial()
			conn, err := ln.Accept()
			if !assert.NoError(t, err) {
				return
			}
			second := inner.dial()
			synctest.Wait() // acceptLoop accepted second's connection and waits to hand it out
			assert.NoError(t, ln.Close())
			if late, err := ln.Accept(); err == nil {
				handedOut++
				_ = late.Close()
			}
			_ = conn.Close()
			_ = first.Close()
			_ = second.Close()
			synctest.Wait()
		}
		assert.Zero(t, handedOut, "of 100 closed listeners, Accept handed out a connection after Close in %d", handedOut)
	})
}
