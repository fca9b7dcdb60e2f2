package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/aoai-failover/failover"
)

// The handler of a stream holds its goroutine for the stream's whole life, and with it the goroutine's stack:
// Go grows a stack to the deepest its code ever reached, and shrinks it (by half, at a garbage collection) only
// while it uses under a quarter of it. Passing a stream's events on takes about 6 KiB of stack, within 8 KiB; but
// the failover engine with the Transport and the JSON decoding of the first event, and net/http's writing of the
// answer's headers (which sorts them), reach past 8 KiB from the handler, so its stack grew to 16 KiB and stayed
// there. Those two steps run on short-lived goroutines instead, whose stacks go back to the runtime (for the next
// request's) as soon as they are done: 8 KiB less per concurrent stream (gateway/internal/leanbench measures it).

// onFreshStack runs f on a goroutine of its own and waits for it. A panic in f is raised again on the caller's
// goroutine, where net/http recovers a handler's panic as it would have, with the stack where it happened in its
// value (net/http logs the value with the stack of the raise, which would otherwise say only "onFreshStack").
// http.ErrAbortHandler is raised as it is, for net/http to recognise.
func onFreshStack(f func()) {
	panicked := make(chan any, 1)
	go func() {
		var p any
		defer func() { panicked <- p }()
		defer func() {
			if p = recover(); p != nil && p != http.ErrAbortHandler {
				p = fmt.Sprintf("%v\n\n[the panic happened on a fresh stack, here:]\n%s", p, debug.Stack())
			}
		}()
		f()
	}()
	if p := <-panicked; p != nil {
		panic(p)
	}
}

// doShallow is client.Do(req) on a fresh stack (see onFreshStack) when the answer may be a stream: body (the
// request's) or the query names "stream". Other requests, whose handler is done as soon as the answer is written,
// are sent from the handler's goroutine: a new goroutine, and growing its stack, cost about 5 µs of CPU.
func doShallow(client *failover.Client, req *http.Request, body []byte) (resp *http.Response, err error) {
	if !bytes.Contains(body, []byte(`"stream"`)) && !strings.Contains(req.URL.RawQuery, "stream") {
		return client.Do(req)
	}
	onFreshStack(func() { resp, err = client.Do(req) })
	return resp, err
}

// beginStream writes a stream's status and headers, and flushes them, on a fresh stack (see onFreshStack).
func beginStream(w http.ResponseWriter, rc *http.ResponseController, status int) {
	onFreshStack(func() {
		w.WriteHeader(status)
		_ = rc.Flush()
	})
}
