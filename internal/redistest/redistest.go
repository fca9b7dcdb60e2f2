// Package redistest runs real redis-server processes on loopback for the tests that share state through Redis.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// EnvURL names a running Redis for the tests (.ci/run starts one); without it, a package's TestMain starts its
// own from redis-server on PATH.
const EnvURL = "FAILOVER_TEST_REDIS_URL"

// EnvSkip, set to 1, skips the tests that need Redis on a machine without redis-server.
const EnvSkip = "FAILOVER_SKIP_REDIS"

// Server is a redis-server process of the tests' own, on a loopback port, keeping nothing on disk.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
}

// Start starts a redis-server on a free loopback port and waits (at most 10 s) until it answers.
func Start() (*Server, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not on PATH: install it (apt-get install redis-server), set " + EnvURL + " to a running one, or set " + EnvSkip + "=1 to skip these tests")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: addr, dir: dir}
	if err := s.start(path); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) start(path string) error {
	_, port, _ := net.SplitHostPort(s.Addr)
	s.cmd = exec.Command(path, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "yes")
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on %s did not answer within 10 s: %w", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond) // waiting for another process, not for time to pass
	}
}

// ping sends PING and reads PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("answered %q", strings.TrimSpace(line))
	}
	return nil
}

// URL is the server's redis:// address.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Kill ends the server at once, as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() error {
	s.Kill()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return err
	}
	return s.start(path)
}

// Stop ends the server and removes its directory.
func (s *Server) Stop() {
	s.Kill()
	os.RemoveAll(s.dir)
}

var shared struct {
	once   sync.Once // the server starts with the first test that asks for it
	url    string
	server *Server
	err    error
	skip   bool
}

// Main runs a package's tests with Redis at hand: EnvURL's, or a server of the package's own, started for the
// first test that asks (URL) and stopped after; then, when they passed, it fails them if a goroutine outlived
// them. It is the package's TestMain's body, as in os.Exit(redistest.Main(m.Run)).
func Main(run func() int) int {
	code := withRedis(run)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

func withRedis(run func() int) int {
	shared.skip = os.Getenv(EnvSkip) == "1"
	shared.url = os.Getenv(EnvURL)
	defer func() {
		if shared.server != nil {
			shared.server.Stop()
		}
	}()
	return run()
}

// URL returns the tests' Redis, skipping the test when EnvSkip is set and failing it when there is none.
func URL(tb testing.TB) string {
	tb.Helper()
	shared.once.Do(func() {
		if shared.url != "" || shared.skip {
			return
		}
		if shared.server, shared.err = Start(); shared.err == nil {
			shared.url = shared.server.URL()
		}
	})
	switch {
	case shared.url != "":
		return shared.url
	case shared.skip:
		tb.Skip(EnvSkip + "=1: skipping a test that needs Redis")
	case shared.err != nil:
		tb.Fatal(shared.err)
	default:
		tb.Fatal("redistest.URL called without redistest.Main in TestMain")
	}
	return ""
}

// Own starts a server for one test alone (one it may kill), stopped when the test ends.
func Own(tb testing.TB) *Server {
	tb.Helper()
	if os.Getenv(EnvSkip) == "1" {
		tb.Skip(EnvSkip + "=1: skipping a test that needs Redis")
	}
	s, err := Start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}
