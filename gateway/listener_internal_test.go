package gateway

import (
	"errors"
	"net"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pipeListener accepts the server ends of net.Pipe connections dialled through it, without a network, so that a
// synctest bubble sees an Accept that waits as durably blocked.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { close(l.closed); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

// dial hands the listener a connection and returns the caller's end.
func (l *pipeListener) dial() net.Conn {
	server, client := net.Pipe()
	go func() { l.conns <- server }()
	return client
}

// Past MaxConnections, Accept waits until a connection closes (counted in connectionWaits), and Close ends the
// wait.
func TestListenerWaitsPastMaxConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &Gateway{cfg: Config{MaxConnections: 2}, metrics: newMetrics(), conns: &connTable{}}
		inner := newPipeListener()
		ln := g.Listener(inner)
		var open []net.Conn
		for range 2 {
			client := inner.dial()
			defer client.Close()
			conn, err := ln.Accept()
			require.NoError(t, err)
			open = append(open, conn)
		}
		assert.EqualValues(t, 2, g.metrics.connections.Load())

		third := inner.dial()
		defer third.Close()
		accepted := make(chan net.Conn)
		go func() {
			conn, err := ln.Accept()
			assert.NoError(t, err)
			accepted <- conn
		}()
		synctest.Wait()
		select {
		case <-accepted:
			t.Fatal("a third connection was accepted while MaxConnections (2) were open")
		default:
		}
		assert.EqualValues(t, 1, g.metrics.connectionWaits.Load())

		require.NoError(t, open[0].Close())
		require.NoError(t, open[0].Close()) // a second Close gives no second slot back
		conn := <-accepted
		defer conn.Close()
		assert.EqualValues(t, 2, g.metrics.connections.Load())

		waiting := make(chan error)
		go func() {
			_, err := ln.Accept()
			waiting <- err
		}()
		synctest.Wait()
		require.NoError(t, ln.Close())
		assert.True(t, errors.Is(<-waiting, net.ErrClosed), "Close ends a wait for a slot")
		open[1].Close()
	})
}
