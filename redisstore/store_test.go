package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/redisstore"
	"github.com/aoai-failover/failover/storetest"
)

func TestContract(t *testing.T) {
	url := redisURL(t)
	storetest.Run(t, func(t *testing.T) failover.Store { return open(t, url, prefix(t)) })
}

func TestKeysExpireWhenTheRestEnds(t *testing.T) {
	s, rdb, p := storeAndReader(t)
	ctx, now := t.Context(), time.Now()
	rec := failover.Record{Backend: "eastus@0123456789abcdef", Model: "gpt-4o", Kind: failover.RestThrottled,
		Status: 429, Failures: 1, Since: now, Until: now.Add(30 * time.Second)}
	require.NoError(t, s.Save(ctx, rec, now))

	keys, err := rdb.Keys(ctx, p+":*").Result()
	require.NoError(t, err)
	require.Equal(t, []string{p + ":eastus@0123456789abcdef"}, keys, "one hash per backend, under the prefix")
	ttl, err := rdb.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 29*time.Second)
	assert.LessOrEqual(t, ttl, 30*time.Second+time.Millisecond, "the key goes when the rest ends")

	// A longer rest of another model lengthens the key's life; a shorter one does not shorten it.
	long := rec
	long.Model, long.Until = "gpt-4o-mini", now.Add(time.Hour)
	require.NoError(t, s.Save(ctx, long, now))
	short := rec
	short.Model, short.Until = "o3", now.Add(time.Second)
	require.NoError(t, s.Save(ctx, short, now))
	ttl, err = rdb.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 59*time.Minute)

	// A probe keeps the key for its own life at least.
	ok, _, err := s.Claim(ctx, "westus@fedcba9876543210", []string{""}, "owner", 10*time.Second, now)
	require.NoError(t, err)
	require.True(t, ok)
	ttl, err = rdb.PTTL(ctx, p+":westus@fedcba9876543210").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 9*time.Second)
	assert.LessOrEqual(t, ttl, 10*time.Second)
}

func TestEndedFieldsAreForgotten(t *testing.T) {
	s, rdb, p := storeAndReader(t)
	ctx, now := t.Context(), time.Now()
	for i := range 50 {
		r := failover.Record{Backend: "eastus@1", Model: fmt.Sprint("model-", i), Kind: failover.RestThrottled,
			Since: now, Until: now.Add(time.Second)}
		require.NoError(t, s.Save(ctx, r, now))
	}
	later := now.Add(2 * time.Second)
	r := failover.Record{Backend: "eastus@1", Model: "last", Kind: failover.RestThrottled, Since: later, Until: later.Add(time.Minute)}
	require.NoError(t, s.Save(ctx, r, later))
	fields, err := rdb.HKeys(ctx, p+":eastus@1").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"rest:last"}, fields, "a write forgets the rests that have ended")
}

// TestGarbageInRedisIsIgnored: a field someone else wrote, or an older version's, must not break loading.
func TestGarbageInRedisIsIgnored(t *testing.T) {
	s, rdb, p := storeAndReader(t)
	ctx, now := t.Context(), time.Now()
	require.NoError(t, rdb.HSet(ctx, p+":eastus@1", "rest:bad", "{not json", "rest:worse", "[]", "probe:x", "soon someone", "other", "1").Err())
	good := failover.Record{Backend: "eastus@1", Model: "gpt-4o", Kind: failover.RestThrottled, Since: now, Until: now.Add(time.Minute)}
	require.NoError(t, s.Save(ctx, good, now))
	got, err := s.Load(ctx, []string{"eastus@1"}, now)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "gpt-4o", got[0].Model)
	ok, _, err := s.Claim(ctx, "eastus@1", []string{"x"}, "me", time.Minute, now)
	require.NoError(t, err)
	assert.True(t, ok, "an unreadable probe does not hold")
}

func TestOpenNeverQuotesTheURL(t *testing.T) {
	const password = "hunter2-very-secret"
	for _, raw := range []string{
		"redis://:" + password + "@127.0.0.1:notaport/0",
		"redis://user:" + password + "@127.0.0.1:6379/notadb",
		"http://:" + password + "@127.0.0.1:6379/0",
		"redis://:" + password + "@127.0.0.1:6379/0?dial_timeout=soon",
		"redis://:" + password + "@[::1/0",
		"\x7f" + password,
	} {
		_, err := redisstore.Open(raw, "")
		require.Error(t, err, raw)
		assert.NotContains(t, err.Error(), password, raw)
		assert.Contains(t, err.Error(), "FAILOVER_REDIS_URL", "the error names the variable")
	}
}

func TestPrefixIsChecked(t *testing.T) {
	url := redisURL(t)
	for _, p := range []string{"has space", "tab\there", strings.Repeat("x", 65), "nl\n"} {
		_, err := redisstore.Open(url, p)
		require.Error(t, err, p)
		assert.Contains(t, err.Error(), "FAILOVER_REDIS_PREFIX")
	}
	s, err := redisstore.Open(url, "")
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, `redisstore.Store{prefix: "failover"}`, s.String())
}

func TestNewNeedsContextTimeouts(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err := redisstore.New(c, "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ContextTimeoutEnabled")

	c2 := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer c2.Close()
	s, err := redisstore.New(c2, "mine")
	require.NoError(t, err)
	require.NoError(t, s.Close())
	assert.NotErrorIs(t, c2.Ping(context.Background()).Err(), redis.ErrClosed, "the caller's client stays open")
}

// TestSlowRedisIsCutAtTheDeadline: a Redis that accepts connections and never answers must cost a call its
// context's deadline, not go-redis's own 3 s read timeout.
func TestSlowRedisIsCutAtTheDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	defer func() {
		l.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	}()

	s, err := redisstore.Open("redis://"+l.Addr().String()+"/0", "")
	require.NoError(t, err)
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Load(ctx, []string{"eastus@1"}, time.Now())
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded) || isTimeout(err), "got %v", err)
	assert.Less(t, elapsed, 2*time.Second, "the call ends near its deadline, well before go-redis's read timeout")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func rawClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFieldsPerBackendAreBounded(t *testing.T) {
	s, rdb, p := storeAndReader(t)
	ctx, now := t.Context(), time.Now()
	for i := range 1100 {
		r := failover.Record{Backend: "eastus@1", Model: fmt.Sprint("made-up-", i), Kind: failover.RestMissing,
			Since: now, Until: now.Add(time.Hour)}
		require.NoError(t, s.Save(ctx, r, now))
	}
	n, err := rdb.HLen(ctx, p+":eastus@1").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1024), n, "made-up model names do not grow the hash without end")
	// A model already there is still updated.
	r := failover.Record{Backend: "eastus@1", Model: "made-up-0", Kind: failover.RestThrottled, Since: now, Until: now.Add(2 * time.Hour)}
	require.NoError(t, s.Save(ctx, r, now))
	got, err := s.Load(ctx, []string{"eastus@1"}, now)
	require.NoError(t, err)
	require.Len(t, got, 1024)
	kinds := map[string]string{}
	for _, g := range got {
		kinds[g.Model] = g.Kind
	}
	assert.Equal(t, failover.RestThrottled, kinds["made-up-0"])
}

// storeAndReader opens a Store under a prefix of the test's own, and a plain client of the same Redis to read what
// the store wrote.
func storeAndReader(t *testing.T) (*redisstore.Store, *redis.Client, string) {
	t.Helper()
	url := redisURL(t)
	p := prefix(t)
	return open(t, url, p), rawClient(t, url), p
}

func TestOwnerKeys(t *testing.T) {
	s, rdb, p := storeAndReader(t)
	ctx, now := t.Context(), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // far from Redis's clock: expiry is relative
	require.NoError(t, s.SaveOwners(ctx, []string{"resp_1"}, "eastus@0123456789abcdef", 30*time.Second, now))
	require.NoError(t, s.SaveOwners(ctx, []string{"file@x%y"}, "westus@fedcba9876543210", time.Hour+time.Nanosecond, now))

	keys, err := rdb.Keys(ctx, p+":*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{p + ":owner:resp_1", p + ":owner:file%40x%25y"}, keys,
		"one string per object, under the prefix, its id's @ and % escaped")
	value, err := rdb.Get(ctx, p+":owner:resp_1").Result()
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(now.Add(30*time.Second).UnixNano(), " eastus@0123456789abcdef"), value,
		"the end on the Client's clock, then the backend")
	ttl, err := rdb.PTTL(ctx, p+":owner:resp_1").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 29*time.Second)
	assert.LessOrEqual(t, ttl, 30*time.Second, "the key goes when the owner ends")
	ttl, err = rdb.PTTL(ctx, p+":owner:file%40x%25y").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, time.Hour-time.Second, "rounded up to the millisecond")
	assert.LessOrEqual(t, ttl, time.Hour+time.Millisecond)

	require.NoError(t, s.SaveOwners(ctx, []string{"resp_1"}, "eastus@0123456789abcdef", 0, now))
	n, err := rdb.Exists(ctx, p+":owner:resp_1").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "a save with no ttl deletes the key")
}

// TestOwnerGarbageIsIgnored: a value someone else wrote, or a later version's, loads as no owner, not an error.
func TestOwnerGarbageIsIgnored(t *testing.T) {
	s, rdb, p := storeAndReader(t)
	ctx, now := t.Context(), time.Now()
	for _, v := range []string{"", "eastus@1", "soon eastus@1", "-1x eastus@1", "99999999999999999999 eastus@1"} {
		require.NoError(t, rdb.Set(ctx, p+":owner:resp_1", v, time.Minute).Err())
		got, err := s.LoadOwner(ctx, "resp_1", now)
		require.NoError(t, err, v)
		assert.Empty(t, got, v)
	}
	require.NoError(t, rdb.HSet(ctx, p+":owner:resp_2", "f", "v").Err())
	_, err := s.LoadOwner(ctx, "resp_2", now)
	assert.Error(t, err, "a key of another type is an error of the store")
}

// TestOwnerCallsAreOneRoundTrip: SaveOwners and LoadOwner each send Redis one command, not a pipeline or a script
// load.
func TestOwnerCallsAreOneRoundTrip(t *testing.T) {
	opt, err := redis.ParseURL(redisURL(t))
	require.NoError(t, err)
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(opt)
	defer c.Close()
	counter := &commandCounter{}
	c.AddHook(counter)
	s, err := redisstore.New(c, prefix(t))
	require.NoError(t, err)
	ctx, now := t.Context(), time.Now()
	require.NoError(t, c.Ping(ctx).Err()) // the connection's handshake is not the store's
	counter.reset()
	require.NoError(t, s.SaveOwners(ctx, []string{"resp_1"}, "eastus@1", time.Minute, now))
	assert.Equal(t, []string{"set"}, counter.reset())
	got, err := s.LoadOwner(ctx, "resp_1", now)
	require.NoError(t, err)
	assert.Equal(t, "eastus@1", got)
	assert.Equal(t, []string{"get"}, counter.reset())
	got, err = s.LoadOwner(ctx, "resp_2", now)
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.Equal(t, []string{"get"}, counter.reset())
	require.NoError(t, s.SaveOwners(ctx, []string{"resp_1"}, "eastus@1", 0, now))
	assert.Equal(t, []string{"del"}, counter.reset())
}

// commandCounter is a go-redis hook that records the commands sent, a pipeline's as one "pipeline".
type commandCounter struct {
	mu   sync.Mutex
	sent []string
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		c.sent = append(c.sent, strings.ToLower(cmd.Name()))
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		c.sent = append(c.sent, "pipeline")
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (c *commandCounter) reset() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	sent := c.sent
	c.sent = nil
	return sent
}
