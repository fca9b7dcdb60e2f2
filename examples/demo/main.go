// Command demo shows failover at work. By default it runs offline: it starts simulated Azure OpenAI regions on
// this machine, sends a few chat completions through them and prints which region served each request, why the
// others failed, and which regions the client then lets rest, so that later requests do not pay for them again. With -env it uses the real regions configured in the environment and .env instead.
//
//	go run ./examples/demo                       # region 1 throttled, region 2 healthy
//	go run ./examples/demo -scenario outage      # see -h for every scenario
//	go run ./examples/demo -scenario replicas -redis redis://127.0.0.1:6379/0   # two replicas share through Redis
//	go run ./examples/demo -scenario steering    # steer away from a region before it answers 429
//	go run ./examples/demo -scenario hedging     # a slow region's requests raced against the next
//	go run ./examples/demo -env -model gpt-4o    # real regions from .env
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/redisstore"
	"github.com/aoai-failover/failover/storetest"
	openai "github.com/sashabaranov/go-openai"
)

// scenario sets up simulated backends: what each answers, in the order they are tried.
type scenario struct {
	about    string
	regions  []simulated
	fallback simulated
	replicas int // clients taking turns, sharing what they learn through a store; 0 is one client alone
	options  []failover.Option
	quota    bool // show what each answer says is left of its region's quota
}

type simulated struct {
	name    string
	about   string
	reply   failovertest.Reply
	options []failovertest.Option
}

var healthy = failovertest.Reply{}

var scenarios = map[string]scenario{
	"throttled": {
		about: "the first region is out of quota (429 with retry-after); the second serves",
		regions: []simulated{
			{"eastus", "answers 429 Too Many Requests, retry-after: 30s", failovertest.RateLimited(30 * time.Second), nil},
			{"westeurope", "healthy", healthy, nil},
		},
		fallback: simulated{"openai", "healthy", healthy, nil},
	},
	"outage": {
		about: "the first region resets connections, the second answers 503; the third serves",
		regions: []simulated{
			{"eastus", "drops every connection", failovertest.Disconnect(), nil},
			{"westeurope", "answers 503 Service Unavailable", failovertest.Unavailable(), nil},
			{"swedencentral", "healthy", healthy, nil},
		},
		fallback: simulated{"openai", "healthy", healthy, nil},
	},
	"fallback": {
		about: "every region is out; the public OpenAI API serves",
		regions: []simulated{
			{"eastus", "answers 429 Too Many Requests, retry-after: 60s", failovertest.RateLimited(time.Minute), nil},
			{"westeurope", "answers 500 Internal Server Error", failovertest.InternalError(), nil},
		},
		fallback: simulated{"openai", "healthy", healthy, nil},
	},
	"exhausted": {
		about: "everything is out; the error lists every attempt, then says when to come back",
		regions: []simulated{
			{"eastus", "answers 429 Too Many Requests, retry-after: 60s", failovertest.RateLimited(time.Minute), nil},
			{"westeurope", "answers 404 DeploymentNotFound", failovertest.DeploymentNotFound(), nil},
		},
		fallback: simulated{"openai", "answers 503 Service Unavailable, retry-after: 30s", unavailableFor(30 * time.Second), nil},
	},
	"replicas": {
		about: "two replicas take turns and share what they learn: B never asks the region A found throttled",
		regions: []simulated{
			{"eastus", "answers 429 Too Many Requests, retry-after: 30s", failovertest.RateLimited(30 * time.Second), nil},
			{"westeurope", "healthy", healthy, nil},
		},
		fallback: simulated{"openai", "healthy", healthy, nil},
		replicas: 2,
	},
	"steering": {
		about: "the first region's quota is nearly spent, and its answers say so: the next requests go to the second before a 429",
		regions: []simulated{
			{"eastus", "healthy, with 20 tokens a minute, and says in every answer what is left", healthy,
				[]failovertest.Option{failovertest.WithQuota(failovertest.Quota{TokensPerMinute: 20})}},
			{"westeurope", "healthy", healthy, nil},
		},
		fallback: simulated{"openai", "healthy", healthy, nil},
		quota:    true,
	},
	"hedging": {
		about: "the first region is slow today (3 s); after 200 ms each request goes to the second too, and the first answer wins",
		regions: []simulated{
			{"eastus", "answers after 3 s", failovertest.Reply{Delay: 3 * time.Second}, nil},
			{"westeurope", "healthy", healthy, nil},
		},
		fallback: simulated{"openai", "healthy", healthy, nil},
		options:  []failover.Option{failover.WithHedging(failover.Hedging{Delay: 200 * time.Millisecond})},
	},
	"refused": {
		about: "the first region's content filter refuses the prompt; no other region is asked",
		regions: []simulated{
			{"eastus", "refuses the prompt (400 content_filter)", failovertest.ContentFilter(), nil},
			{"westeurope", "healthy", healthy, nil},
		},
		fallback: simulated{"openai", "healthy", healthy, nil},
	},
}

func unavailableFor(d time.Duration) failovertest.Reply {
	r := failovertest.Unavailable()
	r.Header = http.Header{"Retry-After": {strconv.Itoa(int(d.Seconds()))}}
	return r
}

var prompts = []string{"Name one colour.", "Say hello in French.", "What is 2 + 2?"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, args []string) error {
	flags := flag.NewFlagSet("demo", flag.ContinueOnError)
	flags.SetOutput(out)
	names := make([]string, 0, len(scenarios))
	for name := range scenarios {
		names = append(names, name)
	}
	sort.Strings(names)
	which := flags.String("scenario", "throttled", "simulated scenario: "+strings.Join(names, ", "))
	useEnv := flags.Bool("env", false, "use the real regions configured in the environment and .env")
	model := flags.String("model", "", "model to ask for (default: FAILOVER_MODEL with -env, else gpt-4o)")
	requests := flags.Int("requests", len(prompts), "how many requests to send (1 to 100)")
	redisURL := flags.String("redis", "", "with -scenario replicas: share through the Redis at this URL instead of in memory")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *requests < 1 || *requests > 100 {
		return fmt.Errorf("-requests is %d; expected 1 to 100", *requests)
	}

	var clients []*failover.Client
	var err error
	showQuota := false
	if *useEnv {
		var opts []failover.Option
		if *model != "" {
			opts = append(opts, failover.WithModel(*model))
		}
		client, err := failover.NewFromEnv(opts...)
		if err != nil {
			return err
		}
		clients = append(clients, client)
		fmt.Fprintf(out, "failover demo: real regions from the environment, tried in this order:\n")
		for i, name := range client.Regions() {
			fmt.Fprintf(out, "  %d. %s\n", i+1, name)
		}
	} else {
		s, ok := scenarios[*which]
		if !ok {
			return fmt.Errorf("-scenario %q is not one of: %s", *which, strings.Join(names, ", "))
		}
		if *model == "" {
			*model = "gpt-4o"
		}
		var servers []*failovertest.Server
		var cleanup func()
		showQuota = s.quota
		clients, servers, cleanup, err = simulate(out, *which, s, *model, *redisURL)
		if err != nil {
			return err
		}
		defer cleanup()
		defer func() {
			counts := make([]string, len(servers))
			for i, srv := range servers {
				counts[i] = fmt.Sprintf("%s %d", srv.Name, srv.Requests())
			}
			fmt.Fprintf(out, "\nrequests each backend received: %s\n", strings.Join(counts, ", "))
		}()
	}

	for i := range *requests {
		prompt := prompts[i%len(prompts)]
		client := clients[i%len(clients)]
		if len(clients) > 1 {
			fmt.Fprintf(out, "\nrequest %d, on replica %c: %q\n", i+1, 'A'+i%len(clients), prompt)
		} else {
			fmt.Fprintf(out, "\nrequest %d: %q\n", i+1, prompt)
		}
		printRests(out, client)
		ctx := failover.WithTrace(ctx, &failover.Trace{AttemptDone: func(a failover.Attempt) {
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
	}
	return nil
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

// simulate starts the scenario's fake backends and the clients over them.
func simulate(out io.Writer, name string, s scenario, model, redisURL string) ([]*failover.Client, []*failovertest.Server, func(), error) {
	var servers []*failovertest.Server
	var clients []*failover.Client
	var store failover.Store
	cleanup := func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
		if c, ok := store.(io.Closer); ok {
			c.Close()
		}
		for _, srv := range servers {
			srv.Close()
		}
	}
	if redisURL != "" && s.replicas == 0 {
		return nil, nil, nil, errors.New("-redis is for -scenario replicas")
	}
	regions := make([]failover.Region, len(s.regions))
	fmt.Fprintf(out, "failover demo, scenario %q: %s.\nSimulated on this machine, no credentials needed. Backends, in the order they are tried:\n", name, s.about)
	for i, r := range s.regions {
		srv := failovertest.NewRegion(r.name, r.options...)
		srv.SetDefault(r.reply)
		servers = append(servers, srv)
		regions[i] = failover.Region{Name: r.name, Endpoint: srv.URL, APIKey: srv.Key}
		fmt.Fprintf(out, "  %d. %-14s %s\n", i+1, r.name, r.about)
	}
	oai := failovertest.NewOpenAI()
	oai.SetDefault(s.fallback.reply)
	servers = append(servers, oai)
	fmt.Fprintf(out, "  %d. %-14s the public OpenAI API, %s\n", len(regions)+1, failover.OpenAIFallbackName, s.fallback.about)

	opts := append([]failover.Option{failover.WithOpenAIFallback(oai.Key, oai.URL), failover.WithModel(model),
		failover.WithAttemptTimeout(10 * time.Second)}, s.options...)
	if s.replicas > 0 {
		store = new(storetest.Memory)
		where := "a store in memory"
		if redisURL != "" {
			rs, err := redisstore.Open(redisURL, "failover-demo")
			if err != nil {
				cleanup()
				return nil, nil, nil, err
			}
			store, where = rs, "Redis (keys under failover-demo:)"
		}
		opts = append(opts, failover.WithStore(store))
		fmt.Fprintf(out, "%d replicas (clients) take turns, sharing through %s.\n", s.replicas, where)
	}
	for range max(s.replicas, 1) {
		client, err := failover.New(regions, opts...)
		if err != nil {
			cleanup()
			return nil, nil, nil, err
		}
		clients = append(clients, client)
	}
	return clients, servers, cleanup, nil
}

func short(err error) string {
	s := err.Error()
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
