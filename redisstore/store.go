package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/aoai-failover/failover"
)

// DefaultPrefix is the prefix of the keys when none is given.
const DefaultPrefix = "failover"

// Store is a failover.Store in Redis: give it to every replica with failover.WithStore, or set
// FAILOVER_REDIS_URL and build clients with failover.NewFromEnv(failover.WithStoreOpener(redisstore.Opener)).
//
// Each backend is one hash under the prefix, named by the region's name and a digest of its endpoint (never a
// key); it holds the backend's rests and probes (at most 1,024 fields, so that made-up model names cannot grow
// it), expires when the last of them ends, and is written by one Lua script per change, in one round trip. Clients read it at most once a second each (failover.StoreTiming), so a
// request seldom waits on Redis, and never longer than the timeout there. Redis 6 or later; a Redis Cluster
// works too.
//
// Store is also a failover.OwnerStore: which backend holds a stored response, file or batch is one string key per
// object under the prefix, "<prefix>:owner:<id>", that expires with it (see SaveOwners).
type Store struct {
	client redis.UniversalClient
	prefix string
	owned  bool // Close closes the client
}

var _ failover.Store = (*Store)(nil)

// New returns a Store that keeps its keys under prefix (empty for DefaultPrefix) through client, which the caller
// keeps and closes. The client must have ContextTimeoutEnabled, so that a slow Redis cannot hold a request
// beyond the Client's store timeout.
func New(client redis.UniversalClient, prefix string) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: client is nil")
	}
	enabled := true
	switch c := client.(type) {
	case *redis.Client:
		enabled = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		enabled = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		enabled = c.Options().ContextTimeoutEnabled
	}
	if !enabled {
		return nil, errors.New("redisstore: the client's ContextTimeoutEnabled is false; set it, or a slow Redis holds requests for its ReadTimeout instead of the store timeout")
	}
	prefix, err := checkPrefix(prefix)
	if err != nil {
		return nil, err
	}
	return &Store{client: client, prefix: prefix}, nil
}

// Open returns a Store at rawURL (redis://[user:password@]host[:port][/db], rediss:// for TLS, or unix://), with
// its keys under prefix (empty for DefaultPrefix). The Store owns its connections: Close them with Close. An
// error never quotes the URL, which may hold a password.
func Open(rawURL, prefix string) (*Store, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redisstore: FAILOVER_REDIS_URL cannot be read (%s); expected redis://[:password@]host:port[/db] or rediss://…", withoutURL(err, rawURL))
	}
	opt.ContextTimeoutEnabled = true
	if opt.DialerRetries == 0 {
		opt.DialerRetries = 1 // one dial per call: the Client's deadline is short, and it retries later by itself
	}
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	s, err := New(redis.NewClient(opt), prefix)
	if err != nil {
		return nil, err
	}
	s.owned = true
	return s, nil
}

// Opener opens a Store for failover.WithStoreOpener: it is Open.
func Opener(rawURL, prefix string) (failover.Store, error) {
	s, err := Open(rawURL, prefix)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// withoutURL is err's text without the URL or its password. A URL with user info that does not parse (a "/",
// "?" or "#" left unescaped in the password, say) has no known end to its password, and url.Parse's message may
// quote a piece of it: then nothing of the message is kept.
func withoutURL(err error, rawURL string) string {
	if u, perr := url.Parse(rawURL); strings.Contains(rawURL, "@") && (perr != nil || u.User == nil) {
		return "details withheld: they could quote part of the password; percent-encode any / ? # % or @ in it"
	}
	msg := err.Error()
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		msg = ue.Err.Error() // the rest quotes the URL
	}
	if u, perr := url.Parse(rawURL); perr == nil && u.User != nil {
		msg = strings.ReplaceAll(msg, u.User.String(), "[redacted]")
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "[redacted]")
		}
	}
	return strings.ReplaceAll(msg, rawURL, "[url]")
}

func checkPrefix(p string) (string, error) {
	if p == "" {
		return DefaultPrefix, nil
	}
	if len(p) > 64 || strings.ContainsFunc(p, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		return "", errors.New("redisstore: the key prefix (FAILOVER_REDIS_PREFIX) must be up to 64 printable characters without spaces, such as failover or myapp-prod")
	}
	return p, nil
}

// Close closes the connections the Store opened; a client given to New stays open.
func (s *Store) Close() error {
	if s.owned {
		return s.client.Close()
	}
	return nil
}

// key is the hash of one backend.
func (s *Store) key(backend string) string { return s.prefix + ":" + backend }

// wire is a record as the hash holds it: the backend is the key, the model the field.
type wire struct {
	Kind       string `json:"kind"`
	Deployment string `json:"deployment,omitempty"`
	Status     int    `json:"status,omitempty"`
	Failures   int    `json:"failures,omitempty"`
	Since      int64  `json:"since"` // Unix nanoseconds
	Until      int64  `json:"until"`
}

const restField = "rest:"

// Load implements failover.Store with one pipelined HGETALL per backend, in one round trip.
func (s *Store) Load(ctx context.Context, backends []string, now time.Time) ([]failover.Record, error) {
	cmds := make([]*redis.MapStringStringCmd, len(backends))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, b := range backends {
			cmds[i] = p.HGetAll(ctx, s.key(b))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: load: %w", err)
	}
	var out []failover.Record
	for i, cmd := range cmds {
		for field, value := range cmd.Val() {
			model, ok := strings.CutPrefix(field, restField)
			if !ok {
				continue
			}
			if r, ok := decode(backends[i], model, value); ok && r.Until.After(now) {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func decode(backend, model, value string) (failover.Record, bool) {
	var w wire
	if json.Unmarshal([]byte(value), &w) != nil {
		return failover.Record{}, false
	}
	return failover.Record{Backend: backend, Model: model, Deployment: w.Deployment, Kind: w.Kind, Status: w.Status, Failures: w.Failures,
		Since: time.Unix(0, w.Since), Until: time.Unix(0, w.Until)}, true
}

// Save implements failover.Store with one script.
func (s *Store) Save(ctx context.Context, r failover.Record, now time.Time) error {
	value, err := json.Marshal(wire{Kind: r.Kind, Deployment: r.Deployment, Status: r.Status, Failures: r.Failures,
		Since: r.Since.UnixNano(), Until: r.Until.UnixNano()})
	if err != nil {
		return fmt.Errorf("redisstore: save: %w", err)
	}
	ttl := r.Until.Sub(now).Milliseconds() + 1 // rounded up: the key must not go before the rest ends
	err = saveScript.Run(ctx, s.client, []string{s.key(r.Backend)}, restField+r.Model, value,
		r.Until.UnixNano(), now.UnixNano(), ttl, r.Kind).Err()
	if err != nil {
		return fmt.Errorf("redisstore: save: %w", err)
	}
	return nil
}

// Claim implements failover.Store with one script.
func (s *Store) Claim(ctx context.Context, backend string, models []string, owner string, ttl time.Duration, now time.Time) (bool, []failover.Record, error) {
	args := append([]any{now.UnixNano(), max(ttl.Milliseconds(), 1), owner}, strs(models)...)
	res, err := claimScript.Run(ctx, s.client, []string{s.key(backend)}, args...).Slice()
	if err != nil {
		return false, nil, fmt.Errorf("redisstore: claim: %w", err)
	}
	if len(res) == 0 {
		return false, nil, errors.New("redisstore: claim: empty answer")
	}
	if ok, _ := res[0].(int64); ok == 1 {
		return true, nil, nil
	}
	var resting []failover.Record
	for i := 1; i+1 < len(res); i += 2 {
		field, _ := res[i].(string)
		value, _ := res[i+1].(string)
		if r, ok := decode(backend, strings.TrimPrefix(field, restField), value); ok {
			resting = append(resting, r)
		}
	}
	return false, resting, nil
}

// Release implements failover.Store with one script.
func (s *Store) Release(ctx context.Context, backend string, models []string, owner string) error {
	args := append([]any{owner}, strs(models)...)
	if err := releaseScript.Run(ctx, s.client, []string{s.key(backend)}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstore: release: %w", err)
	}
	return nil
}

func strs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// String names the Store by its prefix, never its address or password.
func (s *Store) String() string { return "redisstore.Store{prefix: " + strconv.Quote(s.prefix) + "}" }
