package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/redisstore"
	"github.com/aoai-failover/failover/storetest"
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

const defaultScenario = "throttled"

// simulate starts the scenario's fake backends and the clients over them.
func simulate(out io.Writer, c config) (backends, error) {
	s := scenarios[c.scenario]
	b := backends{showQuota: s.quota}
	var store failover.Store
	b.close = func() {
		for _, client := range b.clients {
			client.CloseIdleConnections()
		}
		if closer, ok := store.(io.Closer); ok {
			closer.Close()
		}
		for _, srv := range b.servers {
			srv.Close()
		}
	}
	if c.redisURL != "" && s.replicas == 0 {
		return backends{}, errors.New("-redis is for the replicas scenario")
	}
	regions := make([]failover.Region, len(s.regions))
	fmt.Fprintf(out, "failover demo, scenario %q: %s.\nSimulated on this machine, no credentials needed. Backends, in the order they are tried:\n", c.scenario, s.about)
	for i, r := range s.regions {
		srv := failovertest.NewRegion(r.name, r.options...)
		srv.SetDefault(r.reply)
		b.servers = append(b.servers, srv)
		regions[i] = failover.Region{Name: r.name, Endpoint: srv.URL, APIKey: srv.Key}
		fmt.Fprintf(out, "  %d. %-14s %s\n", i+1, r.name, r.about)
	}
	oai := failovertest.NewOpenAI()
	oai.SetDefault(s.fallback.reply)
	b.servers = append(b.servers, oai)
	fmt.Fprintf(out, "  %d. %-14s the public OpenAI API, %s\n", len(regions)+1, failover.OpenAIFallbackName, s.fallback.about)

	opts := append([]failover.Option{failover.WithOpenAIFallback(oai.Key, oai.URL), failover.WithModel(c.model),
		failover.WithAttemptTimeout(10 * time.Second)}, s.options...)
	if s.replicas > 0 {
		store = new(storetest.Memory)
		where := "a store in memory"
		if c.redisURL != "" {
			rs, err := redisstore.Open(c.redisURL, "failover-demo")
			if err != nil {
				b.close()
				return backends{}, err
			}
			store, where = rs, "Redis (keys under failover-demo:)"
		}
		opts = append(opts, failover.WithStore(store))
		fmt.Fprintf(out, "%d replicas (clients) take turns, sharing through %s.\n", s.replicas, where)
	}
	for range max(s.replicas, 1) {
		client, err := failover.New(regions, opts...)
		if err != nil {
			b.close()
			return backends{}, err
		}
		b.clients = append(b.clients, client)
	}
	return b, nil
}
