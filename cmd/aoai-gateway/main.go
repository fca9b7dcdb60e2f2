// Command aoai-gateway serves Azure OpenAI regions, with failover, to callers in any language: one endpoint in
// the shape of the Azure OpenAI and OpenAI APIs. Configuration is the flags, plus FAILOVER_GATEWAY_KEYS and the
// variables the failover library reads, from the process environment and from a .env file in the working
// directory when there is one (the process environment wins). -h lists them all, and so does docs/configuration.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/gateway"
	"github.com/aoai-failover/failover/redisstore"
	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"
)

// EnvGatewayKeys holds the keys callers authenticate with, comma-separated.
const EnvGatewayKeys = "FAILOVER_GATEWAY_KEYS"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// After the first signal, a second one kills the process at once, as without the handler: an operator who
	// cannot wait for the drain can still stop it.
	context.AfterFunc(ctx, stop)
	// go-redis would print every failed dial to stderr; the client logs once that the store is out, and again
	// when it is back.
	redis.SetLogger(quietRedis{})
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the usage was printed
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "aoai-gateway:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	addr           string
	insecureNoAuth bool
	maxBody        int64
	maxUpload      int64
	requestTimeout time.Duration
	bodyTimeout    time.Duration
	drainTimeout   time.Duration
	jsonLogs       bool
	tlsCert        string
	tlsKey         string
	maxInFlight    int
	maxHeldBytes   int64
	maxConns       int
	pprofAddr      string
}

// envUsage lists the environment variables the command reads, for -h: its own, then the failover library's
// (failover.NewFromEnv). N is a region number.
var envUsage = [][2]string{
	{EnvGatewayKeys, "comma-separated keys callers present (required, unless -insecure-no-auth)"},
	{failover.EnvEndpoint + "_N", "region N's base URL (https); regions are tried in ascending N: 1, 2, …"},
	{failover.EnvAPIKey + "_N", "region N's key"},
	{failover.EnvAuth + "_N", "key or entra (Microsoft Entra ID); unsuffixed: every region's without a key"},
	{failover.EnvRegionName + "_N", "region N's name in logs and metrics"},
	{failover.EnvDeployments + "_N", "the models region N has, model=deployment,…; unsuffixed: every region's"},
	{failover.EnvAPIVersion + "_N", "region N's api-version; unsuffixed: every region's"},
	{failover.EnvPriority + "_N", "region N's priority, 0 or more, lower first"},
	{failover.EnvWeight + "_N", "region N's share of requests with " + failover.EnvStrategy + "=weighted"},
	{failover.EnvOpenAIKey, "the public OpenAI API's key: the last resort when every region is out"},
	{failover.EnvOpenAIBaseURL, "the public OpenAI API's base URL"},
	{failover.EnvModel, "the model of requests that name none"},
	{failover.EnvAttemptTimeout, "limit for one attempt at one region, a Go duration such as 60s"},
	{failover.EnvStrategy, "ordered, round-robin, weighted or least-latency"},
	{failover.EnvMaxWait, "how long a request may wait for a resting region to come back; 0 never waits"},
	{failover.EnvStreamIdle, "how long a stream may go silent after its first content before it is cut; 0 no limit"},
	{failover.EnvQuotaSteering, "true or false: try regions with quota left first (default true)"},
	{failover.EnvHedgeDelay, "a request not answered within this long goes to the next region too"},
	{failover.EnvHedgePercentile, "or after this percentile of the region's latencies, such as 0.95"},
	{failover.EnvRedisURL, "share what is learnt with other replicas through this Redis (redis:// or rediss://)"},
	{failover.EnvRedisPrefix, "the prefix of the keys in Redis"},
}

// usage is the -h text: what the command does, the environment variables it reads, and where from, then the flags.
func usage(flags *flag.FlagSet) {
	out := flags.Output()
	fmt.Fprintf(out, `Usage: aoai-gateway [flags]

Serves the Azure OpenAI regions configured in the environment, with failover, as one endpoint in the shape of the
Azure OpenAI and OpenAI APIs.

Environment variables, read from the process environment and from a %s file in the working directory, when there
is one (the process environment wins):
`, failover.EnvFile)
	width := 0
	for _, v := range envUsage {
		width = max(width, len(v[0]))
	}
	for _, v := range envUsage {
		fmt.Fprintf(out, "  %-*s  %s\n", width, v[0], v[1])
	}
	fmt.Fprintf(out, `
The unsuffixed %s, %s and %s are region 1's.
Microsoft Entra ID's own variables (AZURE_CLIENT_ID, AZURE_TENANT_ID, …) are read from the process environment
only, never from %s. See .env.example and docs/configuration.md.

Flags:
`, failover.EnvEndpoint, failover.EnvAPIKey, failover.EnvRegionName, failover.EnvFile)
	flags.PrintDefaults()
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	flags := flag.NewFlagSet("aoai-gateway", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { usage(flags) }
	flags.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on, host:port")
	flags.BoolVar(&o.insecureNoAuth, "insecure-no-auth", false, "serve callers without a gateway key; refused unless -addr is a loopback address")
	flags.Int64Var(&o.maxBody, "max-body", gateway.DefaultMaxBodyBytes, "largest request body accepted, in bytes; larger ones get 413")
	flags.Int64Var(&o.maxUpload, "max-upload", gateway.DefaultMaxUploadBytes, "largest audio or file upload accepted, in bytes; larger ones get 413")
	flags.DurationVar(&o.requestTimeout, "request-timeout", gateway.DefaultRequestTimeout, "limit for one request, from arrival to the last byte of its answer (streams included)")
	flags.DurationVar(&o.bodyTimeout, "body-timeout", gateway.DefaultBodyReadTimeout, "limit for reading a request body")
	flags.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long requests in flight may take to finish before they are cut")
	flags.BoolVar(&o.jsonLogs, "json-logs", false, "log in JSON instead of text")
	flags.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) file: serve HTTPS; needs -tls-key")
	flags.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file of -tls-cert")
	flags.IntVar(&o.maxInFlight, "max-in-flight", gateway.DefaultMaxInFlight, "requests proxied at once; more get 503 gateway_overloaded with Retry-After")
	flags.Int64Var(&o.maxHeldBytes, "max-held-bytes", 0, "bytes held at once for request bodies and buffered answers; a body that does not fit gets 503 gateway_overloaded. 0: 201326592 (192 MiB), or half of GOMEMLIMIT when that is smaller. Without GOMEMLIMIT, the Go memory limit is set to twice this")
	flags.IntVar(&o.maxConns, "max-conns", gateway.DefaultMaxConnections, "connections open at once; past it new connections wait to be accepted")
	flags.StringVar(&o.pprofAddr, "pprof-addr", "", "serve net/http/pprof on this loopback address, such as 127.0.0.1:6060 (no key: reach it through a tunnel); off by default")
	if err := flags.Parse(args); err != nil {
		return o, err
	}
	if flags.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q; every setting is a flag or an environment variable", flags.Arg(0))
	}
	if o.maxBody <= 0 || o.maxUpload <= 0 || o.requestTimeout <= 0 || o.bodyTimeout <= 0 || o.drainTimeout < 0 {
		return o, errors.New("-max-body, -max-upload, -request-timeout and -body-timeout must be positive, -drain-timeout not negative")
	}
	if o.maxInFlight <= 0 || o.maxHeldBytes < 0 || o.maxConns <= 0 {
		return o, errors.New("-max-in-flight and -max-conns must be positive, -max-held-bytes not negative (0: its default)")
	}
	if o.maxHeldBytes != 0 && o.maxHeldBytes <= max(o.maxBody, o.maxUpload) {
		return o, fmt.Errorf("-max-held-bytes is %d, expected more than -max-body and -max-upload (%d): a body they accept must fit",
			o.maxHeldBytes, max(o.maxBody, o.maxUpload))
	}
	if o.pprofAddr != "" && !loopback(o.pprofAddr) {
		return o, fmt.Errorf("-pprof-addr must be a loopback address such as 127.0.0.1:6060, and is %q: profiles need no key, so they are served to this machine only (reach them through an SSH tunnel or kubectl port-forward)", o.pprofAddr)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return o, errors.New("-tls-cert and -tls-key go together: give both files, or neither")
	}
	return o, nil
}

// run serves until ctx ends, then drains. ready, if not nil, is called with the address once it listens.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, nil)
	if o.jsonLogs {
		handler = slog.NewJSONHandler(stderr, nil)
	}
	logger := slog.New(handler)
	keys, err := callerKeys(o)
	if err != nil {
		return err
	}
	client, err := failover.NewFromEnv(failover.WithLogger(logger), failover.WithStoreOpener(redisstore.Opener))
	if err != nil {
		return err
	}
	defer client.Close()
	memoryLimit, restoreMemoryLimit := softMemoryLimit(o)
	defer restoreMemoryLimit()
	gw, err := gateway.New(client, gateway.Config{Keys: keys, AllowNoAuth: o.insecureNoAuth, MaxBodyBytes: o.maxBody, MaxUploadBytes: o.maxUpload,
		RequestTimeout: o.requestTimeout, BodyReadTimeout: o.bodyTimeout, MaxInFlight: o.maxInFlight, MaxHeldBytes: o.maxHeldBytes,
		MaxConnections: o.maxConns, Logger: logger})
	if err != nil {
		return err
	}
	srv, ln, err := listen(o, gw, handler)
	if err != nil {
		return err
	}
	if o.pprofAddr != "" {
		stopPprof, err := servePprof(o.pprofAddr, logger)
		if err != nil {
			ln.Close()
			return err
		}
		defer stopPprof()
	}
	if o.tlsCert == "" && !loopback(o.addr) {
		logger.Warn("aoai-gateway serves plain HTTP on a non-loopback address: gateway keys and prompts cross the network unencrypted; use -tls-cert and -tls-key, or terminate TLS in front")
	}
	logger.Info("aoai-gateway listening", "addr", ln.Addr().String(), "regions", strings.Join(client.Regions(), ","),
		"auth", !o.insecureNoAuth, "tls", o.tlsCert != "", "shared", shared(client), "memory_limit", memoryLimit)
	if ready != nil {
		ready(ln.Addr().String())
	}
	return serve(ctx, srv, gw, ln, o, logger)
}

// callerKeys returns the keys callers authenticate with, and checks that there are some or that -insecure-no-auth
// serves on a loopback address instead.
func callerKeys(o options) ([]string, error) {
	if o.insecureNoAuth && !loopback(o.addr) {
		return nil, fmt.Errorf("-insecure-no-auth is allowed only on a loopback address (127.0.0.1, [::1] or localhost), and -addr is %q", o.addr)
	}
	keys, err := gatewayKeys()
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 && !o.insecureNoAuth {
		return nil, fmt.Errorf("%s is empty: set it to one or more comma-separated keys for callers (openssl rand -hex 32 makes one), or pass -insecure-no-auth on a loopback -addr", EnvGatewayKeys)
	}
	if len(keys) > 0 && o.insecureNoAuth {
		return nil, fmt.Errorf("-insecure-no-auth and %s both given: choose one", EnvGatewayKeys)
	}
	return keys, nil
}

// listen makes the server of gw and listens on -addr, with at most -max-conns connections open. The certificate is
// loaded before listening, so that a bad file stops the start rather than every handshake.
func listen(o options, gw *gateway.Gateway, handler slog.Handler) (*http.Server, net.Listener, error) {
	srv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: they would cut long streams. The gateway sets a deadline for each
		// body read, and one per request for writes.
	}
	if o.tlsCert != "" {
		certificate, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, nil, fmt.Errorf("-tls-cert, -tls-key: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{certificate}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, nil, err
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); o.insecureNoAuth && (!ok || !tcp.IP.IsLoopback()) {
		ln.Close() // localhost resolved to something else
		return nil, nil, fmt.Errorf("-insecure-no-auth is allowed only on a loopback address, and -addr %q listens on %s", o.addr, ln.Addr())
	}
	return srv, gw.Listener(ln), nil
}

// serve serves on ln until ctx ends, then drains: requests in flight have -drain-timeout to finish before they
// are cut, the streams the gateway took over from the server (gateway.Listener) included.
func serve(ctx context.Context, srv *http.Server, gw *gateway.Gateway, ln net.Listener, o options, logger *slog.Logger) error {
	served := make(chan error, 1)
	go func() {
		if o.tlsCert != "" {
			served <- srv.ServeTLS(ln, "", "") // HTTP/2 too; the certificate is in TLSConfig
			return
		}
		served <- srv.Serve(ln)
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("aoai-gateway draining", "timeout", o.drainTimeout)
	drain, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	if err := errors.Join(srv.Shutdown(drain), gw.Shutdown(drain)); err != nil {
		logger.Warn("aoai-gateway: drain timed out; cutting the requests still in flight")
		srv.Close()
	}
	<-served // http.ErrServerClosed
	logger.Info("aoai-gateway stopped")
	return nil
}

// loopback reports whether addr's host is a loopback IP address or localhost. The address actually bound is
// checked again after listening.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// gatewayKeys reads EnvGatewayKeys from the process environment, or else from ./.env as the library reads its
// own variables.
func gatewayKeys() ([]string, error) {
	raw, ok := os.LookupEnv(EnvGatewayKeys)
	if !ok || strings.TrimSpace(raw) == "" {
		env, err := godotenv.Read(failover.EnvFile)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: cannot be parsed as a dotenv file (details withheld: they would quote its secrets)", failover.EnvFile)
		}
		raw = env[EnvGatewayKeys]
	}
	var keys []string
	for i, k := range strings.Split(raw, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			if strings.TrimSpace(raw) != "" {
				return nil, fmt.Errorf("%s: key %d is empty; expected comma-separated keys", EnvGatewayKeys, i+1)
			}
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// quietRedis drops go-redis's own messages.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func shared(c *failover.Client) bool {
	s, _ := c.Sharing()
	return s
}
