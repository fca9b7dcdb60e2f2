package gateway

import (
	"net"
	"sync"
)

// Listener wraps ln so that at most Config.MaxConnections connections accepted from it are open at once: past
// that, Accept waits for one of them to close before it accepts another, and new connections wait in the
// kernel's backlog meanwhile. Each open connection costs a goroutine and its buffers whether or not it carries a
// request, so this bounds what idle and slow connections hold; requests on the connections are bounded by
// MaxInFlight and MaxHeldBytes. Waiting, rather than accepting and closing, keeps callers' connections queued
// instead of failed while the gateway is full; the server's header and idle timeouts free the slots of idle
// ones. The counts are on /metrics: aoai_gateway_open_connections and aoai_gateway_connection_waits_total.
func (g *Gateway) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, g.cfg.MaxConnections), closed: make(chan struct{}), metrics: g.metrics}
}

// limitListener is Gateway.Listener's: a connection holds a slot of slots from its accept to its first Close.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	closed    chan struct{} // closed by Close, which ends a wait for a slot
	closeOnce sync.Once
	metrics   *metrics
}

// Accept waits for a slot, then accepts a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.metrics.connectionWaits.Add(1)
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	conn, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	l.metrics.connections.Add(1)
	return &limitConn{Conn: conn, release: func() {
		l.metrics.connections.Add(-1)
		<-l.slots
	}}, nil
}

// Close closes the listener and ends a wait in Accept.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitConn gives its slot back when it is first closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes a TCP connection, as net/http does before closing one whose request it did not read to
// its end, so that the caller gets the answer rather than a reset.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
