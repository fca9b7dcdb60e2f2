package gateway

import (
	"errors"
	"net"
	"net/http"
	"sync"
)

// Listener wraps ln so that at most Config.MaxConnections connections accepted from it are open at once: past
// that, Accept waits for one of them to close before it accepts another, and new connections wait in the
// kernel's backlog meanwhile. Each open connection costs a goroutine and its buffers whether or not it carries a
// request, so this bounds what idle and slow connections hold; requests on the connections are bounded by
// MaxInFlight and MaxHeldBytes. Waiting, rather than accepting and closing, keeps callers' connections queued
// instead of failed while the gateway is full; the server's header and idle timeouts free the slots of idle
// ones. The counts are on /metrics: aoai_gateway_open_connections and aoai_gateway_connection_waits_total.
//
// On a plain (not TLS) TCP connection from Listener, the gateway passes a stream on over the connection itself
// rather than through net/http, which holds less for as long as the stream lasts (see Shutdown). After the stream
// the connection waits for the caller's next request (up to the server's IdleTimeout; Close closes it, as a
// server's Shutdown closes idle connections), and comes out of Accept again when it begins. The server should serve
// the listener Listener returns, not one wrapped around it: through a wrapper, a stream's connection is closed
// at the stream's end.
func (g *Gateway) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, g.cfg.MaxConnections), closed: make(chan struct{}),
		accepted: make(chan accepted), ready: make(chan struct{}, 1), metrics: g.metrics, conns: g.conns}
}

// limitListener is Gateway.Listener's: a connection holds a slot of slots from its accept to its first Close.
// Connections are accepted on a goroutine of its own (from the first Accept until Close), so that Accept can hand
// out a connection a taken-over stream gave back (requeue) as well as a new one.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	closed    chan struct{} // closed by Close, which ends a wait for a slot
	accepted  chan accepted
	start     sync.Once
	mu        sync.Mutex // over returned, parked and isClosed
	returned  []*limitConn
	ready     chan struct{}           // has a value when returned may not be empty
	parked    map[*limitConn]struct{} // waiting, after a stream, for their next request: closed by Close
	isClosed  bool
	closeOnce sync.Once
	metrics   *metrics
	conns     *connTable
}

type accepted struct {
	conn net.Conn
	err  error
}

// Accept hands out a connection given back by a stream, or a new one.
func (l *limitListener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	for {
		if c := l.nextReturned(); c != nil {
			return c, nil
		}
		select {
		case <-l.ready:
		case a := <-l.accepted:
			return a.conn, a.err
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
}

func (l *limitListener) nextReturned() *limitConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.returned) == 0 {
		return nil
	}
	c := l.returned[0]
	l.returned[0] = nil
	l.returned = l.returned[1:]
	return c
}

// acceptLoop waits for a slot, then accepts a connection, until the listener is closed. An error goes to Accept
// like a connection: the server decides whether to call again.
func (l *limitListener) acceptLoop() {
	for {
		select {
		case l.slots <- struct{}{}:
		default:
			l.metrics.connectionWaits.Add(1)
			select {
			case l.slots <- struct{}{}:
			case <-l.closed:
				return
			}
		}
		var a accepted
		conn, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			a.err = err
		} else {
			a.conn = l.track(conn)
		}
		select {
		case l.accepted <- a:
		case <-l.closed:
			if a.conn != nil {
				_ = a.conn.Close()
			}
			return
		}
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// track counts conn open until its first Close.
func (l *limitListener) track(conn net.Conn) *limitConn {
	l.metrics.connections.Add(1)
	c := &limitConn{Conn: conn, listener: l}
	// Only TCP connections are known by address: each has an address pair of its own (pipes and Unix sockets
	// need not), so that a request's addresses name its connection and no other.
	_, tcp := conn.RemoteAddr().(*net.TCPAddr)
	if tcp {
		c.key = connKey{local: conn.LocalAddr().String(), remote: conn.RemoteAddr().String()}
		l.conns.add(c.key)
	}
	c.release = func() {
		if tcp {
			l.conns.remove(c.key)
		}
		l.metrics.connections.Add(-1)
		<-l.slots
	}
	return c
}

// requeue hands c out of Accept again, or closes it when the listener is closed.
func (l *limitListener) requeue(c *limitConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		_ = c.Close()
		return
	}
	l.returned = append(l.returned, c)
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// open reports whether the listener is not closed.
func (l *limitListener) open() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.isClosed
}

// park counts c among the connections that wait for their next request after a stream, which Close closes (as
// a server's Shutdown closes its idle connections); false when the listener is closed already.
func (l *limitListener) park(c *limitConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		return false
	}
	if l.parked == nil {
		l.parked = make(map[*limitConn]struct{})
	}
	l.parked[c] = struct{}{}
	return true
}

func (l *limitListener) unpark(c *limitConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.parked, c)
}

// Close closes the listener, ends a wait in Accept, and closes the connections given back but not handed out and
// those waiting for their next request after a stream.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.isClosed = true
		close(l.closed)
		idle := l.returned
		for c := range l.parked {
			idle = append(idle, c)
		}
		l.returned, l.parked = nil, nil
		l.mu.Unlock()
		for _, c := range idle {
			_ = c.Close()
		}
	})
	return l.Listener.Close()
}

// limitConn gives its slot back when it is first closed. pending is what was read from it but not yet by the
// server: the beginning of the next request, read while a stream was passing.
type limitConn struct {
	net.Conn
	listener *limitListener
	key      connKey
	pending  []byte
	once     sync.Once
	release  func()
}

func (c *limitConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
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

// connTable is the connections the gateway's Listeners accepted that are open, by their addresses as net/http
// gives them to a handler (http.LocalAddrContextKey, Request.RemoteAddr): how the handler of a stream knows
// that its connection is one the gateway may take over.
type connTable struct {
	mu   sync.Mutex
	open map[connKey]int
}

type connKey struct{ local, remote string }

func (t *connTable) add(k connKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open == nil {
		t.open = make(map[connKey]int)
	}
	t.open[k]++
}

func (t *connTable) remove(k connKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open[k]--; t.open[k] <= 0 {
		delete(t.open, k)
	}
}

// served reports whether r came on a connection one of the gateway's Listeners accepted.
func (t *connTable) served(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open[connKey{local: local.String(), remote: r.RemoteAddr}] > 0
}
