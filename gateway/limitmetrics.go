package gateway

import (
	"bytes"
	"fmt"
	"os"
	runtimemetrics "runtime/metrics"
	"strconv"
	"strings"
)

// writeLimits writes the gateway's use of its limits: requests in flight, bytes held, connections, and the
// requests shed at a limit.
func (m *metrics) writeLimits(b *bytes.Buffer, lim *budget) {
	family(b, "aoai_gateway_in_flight_requests", "gauge", "Requests being proxied now.")
	fmt.Fprintf(b, "aoai_gateway_in_flight_requests %d\n", lim.inFlight.Load())
	family(b, "aoai_gateway_in_flight_limit", "gauge", "Requests that may be proxied at once (MaxInFlight, -max-in-flight).")
	fmt.Fprintf(b, "aoai_gateway_in_flight_limit %d\n", lim.maxInFlight)
	family(b, "aoai_gateway_held_bytes", "gauge", "Bytes held now for request bodies and buffered answers.")
	fmt.Fprintf(b, "aoai_gateway_held_bytes %d\n", lim.held.Load())
	family(b, "aoai_gateway_held_bytes_limit", "gauge", "Bytes that may be held for request bodies and buffered answers (MaxHeldBytes, -max-held-bytes).")
	fmt.Fprintf(b, "aoai_gateway_held_bytes_limit %d\n", lim.maxHeld)
	family(b, "aoai_gateway_shed_total", "counter", "Requests answered 503 gateway_overloaded at a limit, by the limit: requests in flight, or bytes held.")
	for why := range shedReasons {
		fmt.Fprintf(b, "aoai_gateway_shed_total{reason=%s} %d\n", label(why.String()), m.shed[why].Load())
	}
	family(b, "aoai_gateway_open_connections", "gauge", "Connections open on the listeners Gateway.Listener limits.")
	fmt.Fprintf(b, "aoai_gateway_open_connections %d\n", m.connections.Load())
	family(b, "aoai_gateway_connection_waits_total", "counter", "Connections accepted only after waiting for another to close (MaxConnections, -max-conns).")
	fmt.Fprintf(b, "aoai_gateway_connection_waits_total %d\n", m.connectionWaits.Load())
}

// runtimeSamples are the Go runtime's metrics /metrics serves, read with runtime/metrics (which, unlike
// runtime.ReadMemStats, does not stop the world), under the names Prometheus's Go client gives them.
var runtimeSamples = []struct {
	name, kind, help, metric string
}{
	{"go_goroutines", "gauge", "Goroutines that currently exist.", "/sched/goroutines:goroutines"},
	{"go_memstats_heap_alloc_bytes", "gauge", "Bytes of allocated heap objects.", "/memory/classes/heap/objects:bytes"},
	{"go_memstats_sys_bytes", "gauge", "Bytes of memory obtained from the OS by the Go runtime.", "/memory/classes/total:bytes"},
	{"go_gc_cycles_total", "counter", "Completed garbage collection cycles.", "/gc/cycles/total:gc-cycles"},
	{"go_gc_heap_goal_bytes", "gauge", "Heap size the garbage collector aims to finish its cycle at.", "/gc/heap/goal:bytes"},
	{"go_gc_gomemlimit_bytes", "gauge", "The Go runtime's soft memory limit (GOMEMLIMIT).", "/gc/gomemlimit:bytes"},
}

// heapUnused is the heap bytes reserved for objects but not in use now; with the objects', the heap in use.
const heapUnused = "/memory/classes/heap/unused:bytes"

// writeRuntime writes the Go runtime's metrics and, on Linux, the process's resident memory.
func writeRuntime(b *bytes.Buffer) {
	samples := make([]runtimemetrics.Sample, len(runtimeSamples)+1)
	for i, s := range runtimeSamples {
		samples[i].Name = s.metric
	}
	samples[len(runtimeSamples)].Name = heapUnused
	runtimemetrics.Read(samples)
	value := func(i int) uint64 {
		if samples[i].Value.Kind() == runtimemetrics.KindUint64 {
			return samples[i].Value.Uint64()
		}
		return 0 // a metric this Go version does not have
	}
	for i, s := range runtimeSamples {
		family(b, s.name, s.kind, s.help)
		fmt.Fprintf(b, "%s %d\n", s.name, value(i))
	}
	family(b, "go_memstats_heap_inuse_bytes", "gauge", "Bytes in in-use heap spans.")
	fmt.Fprintf(b, "go_memstats_heap_inuse_bytes %d\n", value(1)+value(len(runtimeSamples)))
	if rss, ok := residentBytes(); ok {
		family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes (from /proc/self/statm).")
		fmt.Fprintf(b, "process_resident_memory_bytes %d\n", rss)
	}
}

// residentBytes is the process's resident set size, from /proc/self/statm's second field (in pages); ok is false
// where there is no /proc (not Linux).
func residentBytes() (rss uint64, ok bool) {
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(statm))
	if len(fields) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}
