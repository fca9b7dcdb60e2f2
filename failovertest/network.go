package failovertest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// Network is an in-memory network of fake servers: real HTTP over net.Pipe connections instead of TCP. It is
// for tests run in a testing/synctest bubble, where time is fake and a goroutine waiting on a real socket would
// stall the bubble. Create the Network, its servers and the client inside the bubble, and close them before it
// ends. Outside a bubble it works too.
type Network struct {
	mu        sync.Mutex
	listeners map[string]*pipeListener
	nextPort  int
	transport *http.Transport
}

// NewNetwork returns an empty in-memory network. Pass OnNetwork(n) to NewRegion and NewOpenAI to serve on it,
// and give clients n.Client().
func NewNetwork() *Network {
	n := &Network{listeners: make(map[string]*pipeListener), nextPort: 10000}
	n.transport = &http.Transport{DialContext: n.dial, MaxIdleConnsPerHost: 16}
	return n
}

// Client returns an HTTP client that reaches the network's servers (and nothing else).
func (n *Network) Client() *http.Client { return &http.Client{Transport: n.transport} }

// Close closes the client side's idle connections. Close the servers too.
func (n *Network) Close() { n.transport.CloseIdleConnections() }

// Serve serves h (a gateway, say) on a new address of the network, and returns its base URL and a function that
// stops it.
func (n *Network) Serve(h http.Handler) (url string, stop func()) { return n.serve(h) }

// serve starts serving s on a new address of the network.
func (n *Network) serve(s http.Handler) (string, func()) {
	n.mu.Lock()
	n.nextPort++
	addr := fmt.Sprintf("127.0.0.1:%d", n.nextPort)
	l := &pipeListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
	n.listeners[addr] = l
	n.mu.Unlock()
	srv := &http.Server{Handler: s}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
	return "http://" + addr, func() {
		n.mu.Lock()
		delete(n.listeners, addr)
		n.mu.Unlock()
		_ = srv.Close()
		<-served
	}
}

func (n *Network) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.listeners[addr]
	n.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: fmt.Errorf("connection refused: nothing serves %s", addr)}
	}
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: fmt.Errorf("connection refused: %s closed", addr)}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeListener struct {
	addr  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr(l.addr) }

type pipeAddr string

func (pipeAddr) Network() string  { return "pipe" }
func (a pipeAddr) String() string { return string(a) }
