//go:build measure

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMemoryBudgetMeasure runs the gateway (this test binary as the command) as a child process under abuse and
// reports the child's peak resident memory (VmHWM) against its byte budget. The abuse runs at once, for
// MEASURE_SECONDS (default 20): huge bodies with a Content-Length and chunked, bodies trickled a byte a second,
// connections opened and left idle, and answers of MEASURE_ANSWER_BYTES (default 8 MiB) read fast and slowly.
// MEASURE_LOAD changes how many callers of each kind there are (see measureLoad); MEASURE_ARGS adds flags to the gateway's; GOMEMLIMIT, when set, is the child's too. See BENCHMARKS.md.
//
//	go test -tags measure -run TestMemoryBudgetMeasure -v -timeout 10m ./cmd/aoai-gateway
func TestMemoryBudgetMeasure(t *testing.T) {
	seconds := envInt(t, "MEASURE_SECONDS", 20)
	answerBytes := envInt(t, "MEASURE_ANSWER_BYTES", 8<<20)
	answer := []byte(`{"id":"x","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("x", answerBytes) + `"},"finish_reason":"stop"}]}`)
	small := []byte(`{"id":"x","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
	region := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		data := small
		if r.Header.Get("User-Agent") == "big-answer" {
			data = answer
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data)
	}))
	defer region.Close()

	const key = "gw-measure-key-0c4f"
	child, addr := startChild(t, key, region.URL, strings.Fields(os.Getenv("MEASURE_ARGS")))
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
	defer cancel()

	var peakRSS atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { // VmRSS every 50 ms, besides the kernel's own high-water mark
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			peakRSS.Store(max(peakRSS.Load(), procStatus(child.Process.Pid, "VmRSS")))
			<-tick.C
		}
	})
	var tally sync.Map // outcome -> *atomic.Int64
	count := func(outcome string) {
		v, _ := tally.LoadOrStore(outcome, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	post := func(kind string, body io.Reader, length int64, agent string, readSlowly bool) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/chat/completions", body)
		req.ContentLength = length // -1: chunked
		req.Header.Set("api-key", key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", agent)
		resp, err := client.Do(req)
		if err != nil {
			count(kind + " error")
			return
		}
		defer resp.Body.Close()
		if readSlowly { // 4 MiB a second
			for ctx.Err() == nil {
				if _, err := io.CopyN(io.Discard, resp.Body, 400<<10); err != nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		count(kind + " " + strconv.Itoa(resp.StatusCode))
	}
	loop := func(n int, f func()) {
		for range n {
			wg.Go(func() {
				for ctx.Err() == nil {
					f()
				}
			})
		}
	}
	load := measureLoad(t)
	const huge = 15 << 20 // under -max-body's 16 MiB
	loop(load["huge"], func() { post("huge body", chatJSON(huge), chatJSONLength(huge), "huge", false) })
	loop(load["chunked"], func() { post("huge chunked body", chatJSON(huge), -1, "huge", false) })
	loop(load["answers"], func() { post("big answer", chatJSON(100), chatJSONLength(100), "big-answer", false) })
	loop(load["slow-answers"], func() { post("big answer read slowly", chatJSON(100), chatJSONLength(100), "big-answer", true) })
	loop(load["trickle"], func() { trickle(ctx, addr, key, count) })
	loop(load["idle"], func() { idle(ctx, addr, count) })
	wg.Wait()

	metrics := scrape(t, addr, key)
	hwm := procStatus(child.Process.Pid, "VmHWM")
	t.Logf("GOMEMLIMIT=%q MEASURE_ARGS=%q load %v, answers of %d bytes, %d s", os.Getenv("GOMEMLIMIT"), os.Getenv("MEASURE_ARGS"), load, answerBytes, seconds)
	t.Logf("peak RSS (VmHWM) %.0f MiB; largest VmRSS sampled %.0f MiB", float64(hwm)/(1<<20), float64(peakRSS.Load())/(1<<20))
	for _, name := range []string{"aoai_gateway_held_bytes_limit", `aoai_gateway_shed_total{reason="in_flight"}`,
		`aoai_gateway_shed_total{reason="held_bytes"}`, "aoai_gateway_connection_waits_total", "go_gc_cycles_total"} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(metrics)
		if m != nil {
			t.Logf("%s %s", name, m[1])
		}
	}
	tally.Range(func(k, v any) bool {
		t.Logf("  %-32s %d", k, v.(*atomic.Int64).Load())
		return true
	})
}

// measureLoad is how many callers of each kind abuse the gateway at once: MEASURE_LOAD, such as "idle=3000,huge=0",
// over the defaults.
func measureLoad(t *testing.T) map[string]int {
	load := map[string]int{"huge": 24, "chunked": 8, "answers": 8, "slow-answers": 8, "trickle": 64, "idle": 2000}
	for _, kv := range strings.Split(os.Getenv("MEASURE_LOAD"), ",") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		_, known := load[k]
		require.True(t, err == nil && known, "MEASURE_LOAD: %q, expected kind=count with a kind of %v", kv, load)
		load[k] = n
	}
	return load
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

// chatJSON is a chat request of about n bytes, generated as it is read: the caller holds none of it.
func chatJSON(n int) io.Reader {
	return io.MultiReader(strings.NewReader(chatPrefix), io.LimitReader(xs{}, int64(n)), strings.NewReader(chatSuffix))
}

func chatJSONLength(n int) int64 { return int64(len(chatPrefix) + n + len(chatSuffix)) }

const chatPrefix, chatSuffix = `{"model":"gpt-4o","messages":[{"role":"user","content":"`, `"}]}`

type xs struct{}

func (xs) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// trickle declares a 1 MiB body and sends a byte of it a second, until the gateway gives up on it.
func trickle(ctx context.Context, addr, key string, count func(string)) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		count("trickle dial error")
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_, err = fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\napi-key: %s\r\nContent-Length: %d\r\n\r\n%s", key, 1<<20, chatPrefix)
	for err == nil && ctx.Err() == nil {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		var b [512]byte
		n, rerr := conn.Read(b[:])
		if n > 0 || (rerr != nil && !os.IsTimeout(rerr)) {
			count("trickled body " + strings.TrimSpace(strings.SplitN(string(b[:n]), " ", 3)[min(1, len(strings.SplitN(string(b[:n]), " ", 3))-1)]))
			return
		}
		_, err = conn.Write([]byte("x"))
	}
}

// idle opens a connection and sends nothing, until the gateway closes it.
func idle(ctx context.Context, addr string, count func(string)) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		count("idle dial error")
		time.Sleep(time.Second)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_, _ = io.Copy(io.Discard, conn)
	if ctx.Err() == nil {
		count("idle connection closed by the gateway")
	}
}

// startChild starts the command as a child process, before a region at regionURL, and returns it with its address.
func startChild(t *testing.T, key, regionURL string, args []string) (*exec.Cmd, string) {
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !isConfigVar(k) && k != childEnv {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, childEnv+"=1", EnvGatewayKeys+"="+key, "AZURE_OPENAI_ENDPOINT_1="+regionURL,
		"AZURE_OPENAI_API_KEY_1=region-key-measure", "AZURE_OPENAI_DEPLOYMENTS_1=gpt-4o=gpt-4o")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stderr)
	timer := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() }) // ends the scan if it never starts
	defer timer.Stop()
	for lines.Scan() {
		if !strings.Contains(lines.Text(), "aoai-gateway listening") {
			t.Log(lines.Text())
			continue
		}
		if m := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(lines.Text()); m != nil {
			go func() { // keep reading the child's log, at warning level and above only
				for lines.Scan() {
					if !strings.Contains(lines.Text(), "level=INFO") {
						fmt.Fprintln(os.Stderr, lines.Text())
					}
				}
			}()
			return cmd, m[1]
		}
	}
	t.Fatal("the gateway did not start")
	return nil, ""
}

// procStatus reads a field of /proc/pid/status, in bytes.
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

func scrape(t *testing.T, addr, key string) string {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("api-key", key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(data)
}
