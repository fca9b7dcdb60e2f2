// Command demo shows failover at work. By default it runs offline: it starts simulated Azure OpenAI regions on
// this machine, sends a few chat completions through them and prints which region served each request, why the
// others failed, and which regions the client then lets rest, so that later requests do not pay for them again.
// Name the scenario as the argument or with -scenario; -h lists every scenario with what it shows. With -env it
// uses the real regions configured in the environment and .env instead.
//
//	go run ./examples/demo                       # throttled: region 1 throttled, region 2 healthy
//	go run ./examples/demo outage                # see -h for every scenario
//	go run ./examples/demo -scenario outage      # the same
//	go run ./examples/demo replicas -redis redis://127.0.0.1:6379/0   # two replicas share through Redis
//	go run ./examples/demo steering              # steer away from a region before it answers 429
//	go run ./examples/demo hedging -requests 5   # a slow region's requests raced against the next
//	go run ./examples/demo -env -model gpt-4o    # real regions from .env
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/redis/go-redis/v9"
	openai "github.com/sashabaranov/go-openai"
)

var prompts = []string{"Name one colour.", "Say hello in French.", "What is 2 + 2?"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// go-redis would print every failed dial to stderr; with -redis, the demo says itself when Redis is out.
	redis.SetLogger(quietRedis{})
	if err := run(ctx, os.Stdout, os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// quietRedis drops go-redis's own messages, as aoai-gateway does.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// config is what the command line asks for.
type config struct {
	scenario string // a key of scenarios; not used with env
	env      bool
	model    string
	requests int
	redisURL string
}

// backends are what the requests go through: the clients and, in a simulation, the fake backends behind them.
type backends struct {
	clients   []*failover.Client
	servers   []*failovertest.Server // none with -env
	showQuota bool
	close     func()
}

func run(ctx context.Context, out io.Writer, args []string) error {
	c, err := parseArgs(out, args)
	if err != nil {
		return err
	}
	var b backends
	if c.env {
		b, err = fromEnv(out, c.model)
	} else {
		b, err = simulate(out, c)
	}
	if err != nil {
		return err
	}
	defer b.close()
	err = sendRequests(ctx, out, b, c.requests)
	b.printCounts(out)
	return err
}

// parseArgs reads the command line. The scenario is named either as the argument or with -scenario, and flags
// may come after the argument too.
func parseArgs(out io.Writer, args []string) (config, error) {
	var c config
	flags := flag.NewFlagSet("demo", flag.ContinueOnError)
	flags.SetOutput(out)
	flags.Usage = func() { usage(flags) }
	flags.StringVar(&c.scenario, "scenario", defaultScenario, "the scenario to simulate (see above); the same as naming it as the argument")
	flags.BoolVar(&c.env, "env", false, "use the real regions configured in the environment and .env")
	flags.StringVar(&c.model, "model", "", "model to ask for (default: FAILOVER_MODEL with -env, else gpt-4o)")
	flags.IntVar(&c.requests, "requests", len(prompts), "how many requests to send (1 to 100)")
	flags.StringVar(&c.redisURL, "redis", "", "with the replicas scenario: share through the Redis at this URL instead of in memory")
	var positional []string
	for {
		if err := flags.Parse(args); err != nil {
			return c, err
		}
		if flags.NArg() == 0 {
			break
		}
		positional = append(positional, flags.Arg(0))
		args = flags.Args()[1:]
	}
	if c.requests < 1 || c.requests > 100 {
		return c, fmt.Errorf("-requests is %d; expected 1 to 100", c.requests)
	}
	scenarioFlag := false
	flags.Visit(func(f *flag.Flag) { scenarioFlag = scenarioFlag || f.Name == "scenario" })
	if err := c.pickScenario(scenarioFlag, positional); err != nil {
		return c, err
	}
	if c.model == "" && !c.env {
		c.model = "gpt-4o"
	}
	return c, nil
}

// pickScenario settles the scenario from -scenario (given if scenarioFlag) and the arguments, which may name it
// instead.
func (c *config) pickScenario(scenarioFlag bool, positional []string) error {
	switch {
	case c.env && len(positional) > 0:
		return fmt.Errorf("-env uses the real regions, and %q would name a simulated scenario: give one or the other", positional[0])
	case c.env:
		return nil // -scenario is not used
	case len(positional) > 1:
		return fmt.Errorf("name one scenario, not %d (%q); the scenarios are: %s", len(positional), positional, strings.Join(scenarioNames(), ", "))
	case len(positional) == 1 && scenarioFlag && positional[0] != c.scenario:
		return fmt.Errorf("the argument names scenario %q and -scenario %q: name one; the scenarios are: %s", positional[0], c.scenario, strings.Join(scenarioNames(), ", "))
	}
	from := "-scenario"
	if len(positional) == 1 {
		c.scenario, from = positional[0], "scenario"
	}
	if _, ok := scenarios[c.scenario]; !ok {
		return fmt.Errorf("%s %q is not one of: %s (-h says what each shows)", from, c.scenario, strings.Join(scenarioNames(), ", "))
	}
	return nil
}

func scenarioNames() []string {
	names := make([]string, 0, len(scenarios))
	for name := range scenarios {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// usage is the -h text: both ways to name a scenario, and what each scenario shows.
func usage(flags *flag.FlagSet) {
	out := flags.Output()
	fmt.Fprintf(out, `Usage:
  go run ./examples/demo [flags] [scenario]          simulate a scenario on this machine, no credentials needed
  go run ./examples/demo [flags] -scenario scenario  the same; without a scenario, %s
  go run ./examples/demo -env [flags]                send to the real regions configured in the environment and .env

Scenarios:
`, defaultScenario)
	names := scenarioNames()
	width := 0
	for _, name := range names {
		width = max(width, len(name))
	}
	for _, name := range names {
		fmt.Fprintf(out, "  %-*s  %s\n", width, name, scenarios[name].about)
	}
	fmt.Fprintln(out, "\nFlags:")
	flags.PrintDefaults()
}

// fromEnv builds a client over the real regions in the environment and .env.
func fromEnv(out io.Writer, model string) (backends, error) {
	var opts []failover.Option
	if model != "" {
		opts = append(opts, failover.WithModel(model))
	}
	client, err := failover.NewFromEnv(opts...)
	if err != nil {
		return backends{}, err
	}
	fmt.Fprintf(out, "failover demo: real regions from the environment, tried in this order:\n")
	for i, name := range client.Regions() {
		fmt.Fprintf(out, "  %d. %s\n", i+1, name)
	}
	return backends{clients: []*failover.Client{client}, close: client.CloseIdleConnections}, nil
}

// sendRequests sends the prompts in turn, through the clients in turn, and prints what became of each.
func sendRequests(ctx context.Context, out io.Writer, b backends, requests int) error {
	storeDown := make([]bool, len(b.clients))
	for i := range requests {
		prompt := prompts[i%len(prompts)]
		r := i % len(b.clients)
		client := b.clients[r]
		if len(b.clients) > 1 {
			fmt.Fprintf(out, "\nrequest %d, on replica %c: %q\n", i+1, 'A'+r, prompt)
		} else {
			fmt.Fprintf(out, "\nrequest %d: %q\n", i+1, prompt)
		}
		printRests(out, client)
		if err := send(ctx, out, client, prompt, b.showQuota); err != nil {
			return err
		}
		storeDown[r] = reportStore(out, client, storeDown[r])
	}
	return nil
}

// send sends one request, printing each attempt and then the reply or the error. It fails only when ctx ends.
func send(ctx context.Context, out io.Writer, client *failover.Client, prompt string, showQuota bool) error {
	ctx = failover.WithTrace(ctx, &failover.Trace{AttemptDone: func(a failover.Attempt) {
		printAttempt(out, a, showQuota)
	}})
	reply, err := client.ChatCompletion(ctx, []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: prompt}})
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		fmt.Fprintf(out, "  error: %s\n", short(err))
	default:
		fmt.Fprintf(out, "  reply: %q\n", reply)
	}
	return nil
}

// printAttempt prints how an attempt ended and, if showQuota, what its answer says is left of its region's quota.
func printAttempt(out io.Writer, a failover.Attempt, showQuota bool) {
	mark := "failed "
	switch a.Outcome {
	case failover.OutcomeServed:
		mark = "served "
	case failover.OutcomeReturned, failover.OutcomeCanceled:
		mark = "stopped"
	case failover.OutcomeLost:
		mark = "lost   "
	}
	line := a.String()
	if len(line) > 150 {
		line = line[:150] + "…"
	}
	if left := a.Header.Get("X-Ratelimit-Remaining-Tokens"); showQuota && left != "" {
		line += fmt.Sprintf(" (%s tokens left this minute)", left)
	}
	fmt.Fprintf(out, "  %s %s\n", mark, line)
}

// reportStore says when the store the client shares through (Redis; the one in memory cannot fail) stops
// answering, and when it answers again; down is whether it was out when last reported, and reportStore returns
// whether it is out now. The client goes on meanwhile with what it learns itself.
func reportStore(out io.Writer, client *failover.Client, down bool) bool {
	shared, reachable := client.Sharing()
	switch {
	case !shared || reachable != down:
		return down // no store, or no change
	case !reachable:
		fmt.Fprintln(out, "  Redis does not answer: this replica goes on with what it learns itself, and shares again once Redis is back")
	default:
		fmt.Fprintln(out, "  Redis answers again: this replica shares again")
	}
	return !reachable
}

// printCounts prints how many requests each simulated backend received.
func (b backends) printCounts(out io.Writer) {
	if len(b.servers) == 0 {
		return
	}
	counts := make([]string, len(b.servers))
	for i, srv := range b.servers {
		counts[i] = fmt.Sprintf("%s %d", srv.Name, srv.Requests())
	}
	fmt.Fprintf(out, "\nrequests each backend received: %s\n", strings.Join(counts, ", "))
}

// printRests shows the regions, and the models on them, that the client passes over now, and why.
func printRests(out io.Writer, client *failover.Client) {
	now := time.Now()
	show := func(what string, state failover.State, until time.Time, reason string) {
		line := fmt.Sprintf("  passed over %s: %s", what, state)
		if !until.IsZero() {
			line += fmt.Sprintf(" for %s more", until.Sub(now).Round(100*time.Millisecond))
		}
		fmt.Fprintf(out, "%s (%s)\n", line, reason)
	}
	for _, r := range client.Health() {
		if r.State != failover.StateServing && r.State != failover.StateHalfOpen {
			show(r.Region, r.State, r.Until, r.Reason)
		}
		for _, m := range r.Models {
			if m.State != failover.StateHalfOpen {
				show(r.Region+" for "+m.Model, m.State, m.Until, m.Reason)
			}
		}
	}
}

func short(err error) string {
	s := err.Error()
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
