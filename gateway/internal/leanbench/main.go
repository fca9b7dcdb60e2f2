// Command leanbench measures what the gateway holds per concurrent stream and spends per non-streaming request,
// against net/http/httputil's ReverseProxy in front of the same fake region, in one run. Region, ReverseProxy and
// gateway are processes of their own (this program, started again with -role), so that each proxy's resident
// memory and CPU time are its own: read from /proc/PID/status (VmRSS, VmHWM) and /proc/PID/stat.
//
//	go run ./gateway/internal/leanbench -streams 1000,2000 -rounds 2
//
// For each stream count, a fresh process of each proxy gets a warm-up, then its idle RSS is read; then that many
// streams are opened through it over one second, each a chat completion streamed by the region as one chunk every
// -every for -for (10 s: 100 chunks). The peak RSS (VmHWM) less the idle RSS, over the streams, is the memory per
// stream; the gaps between consecutive chunks as the caller receives them give the inter-chunk p50 and p99. Then
// -requests non-streaming chat completions from -callers callers give the proxy's CPU time per request.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	role     string // "" for the driver; region, bare or gateway for the processes it starts
	upstream string // the region's URL, for bare and gateway
	streams  string
	every    time.Duration
	length   time.Duration
	requests int
	callers  int
	heap     string // a proxy writes its heap profile here, named after it and the stream count, at full load
	proxies  string
	rounds   int
}

const benchKey = "leanbench-key"

func main() {
	var o options
	flag.StringVar(&o.role, "role", "", "internal: the process to be (region, bare or gateway)")
	flag.StringVar(&o.upstream, "upstream", "", "internal: the region's URL")
	flag.StringVar(&o.streams, "streams", "1000", "concurrent stream counts to measure, comma-separated")
	flag.DurationVar(&o.every, "every", 100*time.Millisecond, "time between the chunks of a stream")
	flag.DurationVar(&o.length, "for", 10*time.Second, "length of a stream")
	flag.IntVar(&o.requests, "requests", 20000, "non-streaming requests sent through each proxy for its CPU time; 0: none")
	flag.IntVar(&o.callers, "callers", 16, "concurrent callers of the non-streaming requests")
	flag.StringVar(&o.heap, "heapprofile", "", "directory where each proxy writes a heap profile at full load")
	flag.StringVar(&o.proxies, "proxies", "bare,gateway", "proxies to measure, comma-separated: bare, gateway")
	flag.IntVar(&o.rounds, "rounds", 1, "measurements of each proxy at each stream count, taking turns")
	flag.Parse()
	var err error
	switch o.role {
	case "":
		err = drive(o)
	case "region":
		err = serve(regionHandler())
	case "bare":
		err = serveProxy(bareProxy(o.upstream))
	case "gateway":
		var h http.Handler
		if h, err = gatewayProxy(o.upstream); err == nil {
			err = serveProxy(h)
		}
	default:
		err = fmt.Errorf("-role: %q; expected region, bare or gateway", o.role)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// process is a started role.
type process struct {
	cmd *exec.Cmd
	url string
}

func start(role, upstream, heap string) (*process, error) {
	cmd := exec.Command(os.Args[0], "-role", role, "-upstream", upstream)
	cmd.Env = append(os.Environ(), "LEANBENCH_HEAP="+heap)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("starting %s: %w", role, err)
	}
	return &process{cmd: cmd, url: strings.TrimSpace(line)}, nil
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
}

// status reads a field of /proc/PID/status in KiB.
func (p *process) status(field string) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// cpu is the process's CPU time, user and system, from /proc/PID/stat (in clock ticks of 10 ms).
func (p *process) cpu() time.Duration {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func drive(o options) error {
	region, err := start("region", "", "")
	if err != nil {
		return err
	}
	defer region.stop()
	var counts []int
	for s := range strings.SplitSeq(o.streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("-streams: %q; expected stream counts such as 1000,2000", o.streams)
		}
		counts = append(counts, n)
	}
	fmt.Printf("streams of %s, a chunk every %s; %d non-streaming requests from %d callers; load average %s\n",
		o.length, o.every, o.requests, o.callers, loadAverage())
	fmt.Printf("%-8s %7s %9s %9s %11s %9s %9s %7s %11s\n", "proxy", "streams", "idle KiB", "peak KiB",
		"KiB/stream", "gap p50", "gap p99", "errors", "cpu/request")
	proxies := strings.Split(o.proxies, ",")
	for i, n := range counts {
		for round := range o.rounds {
			for j := range proxies {
				role := proxies[(round+j)%len(proxies)] // each proxy goes first in every other round
				r, err := measure(o, role, region.url, n, i == 0)
				if err != nil {
					return err
				}
				fmt.Printf("%-8s %7d %9d %9d %11.1f %9s %9s %7d %11s\n", role, n, r.idle, r.peak,
					float64(r.peak-r.idle)/float64(n), r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond),
					r.errors, r.cpu.Round(time.Microsecond))
			}
		}
	}
	fmt.Printf("load average %s\n", loadAverage())
	return nil
}

// loadAverage is the machine's load average over 1, 5 and 15 minutes, which the gaps depend on.
func loadAverage() string {
	data, _ := os.ReadFile("/proc/loadavg")
	fields := strings.Fields(string(data))
	return strings.Join(fields[:min(3, len(fields))], " ")
}

type result struct {
	idle, peak int64 // KiB
	p50, p99   time.Duration
	errors     int
	cpu        time.Duration // per non-streaming request
}

func measure(o options, role, region string, streams int, requests bool) (result, error) {
	heap := ""
	if o.heap != "" {
		heap = fmt.Sprintf("%s/%s-%d.heap", o.heap, role, streams)
	}
	p, err := start(role, region, heap)
	if err != nil {
		return result{}, err
	}
	defer p.stop()
	caller := &http.Client{Transport: &http.Transport{MaxIdleConns: streams + o.callers, MaxIdleConnsPerHost: streams + o.callers}}
	defer caller.CloseIdleConnections()
	ctx := context.Background()
	// Warm up: code paths, pools and the connection to the region, both kinds of answer.
	for range 20 {
		if _, err := send(ctx, caller, p.url, false, 0, 0); err != nil {
			return result{}, fmt.Errorf("%s: %w", role, err)
		}
		if _, err := send(ctx, caller, p.url, true, 3, 10*time.Millisecond); err != nil {
			return result{}, fmt.Errorf("%s: %w", role, err)
		}
	}
	caller.CloseIdleConnections()
	time.Sleep(time.Second)
	var r result
	r.idle = p.status("VmRSS")

	chunks := int(o.length / o.every)
	var mu sync.Mutex
	var gaps []time.Duration
	var wg sync.WaitGroup
	ramp := time.Second / time.Duration(streams)
	for range streams {
		time.Sleep(ramp)
		wg.Go(func() {
			g, err := send(ctx, caller, p.url, true, chunks, o.every)
			mu.Lock()
			defer mu.Unlock()
			gaps = append(gaps, g...)
			if err != nil {
				if r.errors == 0 {
					log.Printf("%s: a stream failed: %v", role, err)
				}
				r.errors++
			}
		})
	}
	if heap != "" {
		time.Sleep(o.length / 2)
		_ = p.cmd.Process.Signal(syscall.SIGUSR1)
	}
	wg.Wait()
	r.peak = p.status("VmHWM")
	slices.Sort(gaps)
	if len(gaps) > 0 {
		r.p50, r.p99 = gaps[len(gaps)/2], gaps[len(gaps)*99/100]
	}
	caller.CloseIdleConnections()
	if requests && o.requests > 0 {
		r.cpu, err = cpuPerRequest(ctx, p, caller, o)
	}
	return r, err
}

// cpuPerRequest sends o.requests non-streaming requests through p from o.callers callers and returns p's CPU time
// per request.
func cpuPerRequest(ctx context.Context, p *process, caller *http.Client, o options) (time.Duration, error) {
	next := make(chan struct{}, o.requests)
	for range o.requests {
		next <- struct{}{}
	}
	close(next)
	var failed error
	var once sync.Once
	var wg sync.WaitGroup
	before := p.cpu()
	for range o.callers {
		wg.Go(func() {
			for range next {
				if _, err := send(ctx, caller, p.url, false, 0, 0); err != nil {
					once.Do(func() { failed = err })
				}
			}
		})
	}
	wg.Wait()
	return (p.cpu() - before) / time.Duration(o.requests), failed
}

// send makes one chat completion through the proxy at base and, for a stream of chunks chunks, returns the time
// between consecutive chunks as they arrived.
func send(ctx context.Context, caller *http.Client, base string, stream bool, chunks int, every time.Duration) ([]time.Duration, error) {
	body := fmt.Sprintf(`{"model":"gpt-4o","stream":%t,"max_tokens":%d,"every_ms":%d,"messages":[{"role":"user","content":"Say hello."}]}`,
		stream, chunks, every.Milliseconds())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
		strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("api-key", benchKey)
	resp, err := caller.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	if !stream {
		_, err = io.Copy(io.Discard, resp.Body)
		return nil, err
	}
	lines := bufio.NewReader(resp.Body)
	var gaps []time.Duration
	var last time.Time
	seen := 0
	for {
		line, err := lines.ReadSlice('\n')
		if err != nil {
			if err == io.EOF && seen == chunks+1 {
				return gaps, nil
			}
			return gaps, fmt.Errorf("stream ended after %d events: %w", seen, errors.Join(err))
		}
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		now := time.Now()
		if seen > 0 && seen < chunks {
			gaps = append(gaps, now.Sub(last))
		}
		last = now
		seen++
	}
}
