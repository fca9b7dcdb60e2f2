package failover

import (
	"context"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Store shares what Clients learn about their backends, so that a fleet of replicas (pods, gateways) learns each
// thing once: which regions rest for which models and until when, which models a region was found to lack, and
// which replica probes a backend whose rest for errors is over. Without a Store each Client keeps this in
// process, which stays the default; WithStore shares it. The redisstore package implements Store with Redis, and
// storetest has an in-memory one and the tests every Store must pass.
//
// The Client calls a Store with a short deadline (StoreTiming) and, when a call fails or is late, goes on with
// what it knows itself; a Store only ever adds knowledge. Rests for a wrong key or role and failures to get an
// Entra ID token are not shared: they depend on the replica's own credentials.
//
// Implementations must be safe for concurrent use. now is the Client's clock; a Store compares Until with it,
// never with its own.
//
// Store will not grow: what later versions share more comes as optional interfaces, which a Store implements
// beside it and the Client finds by type assertion when it is built (see storeExtrasOf), so that a Store
// written against this version keeps working, sharing what it can. Today there are two: io.Closer, which
// Client.Close calls on a Store the Client opened itself (WithStoreOpener), and OwnerStore, which shares which
// backend holds a stored response, file or batch; redisstore.Store and storetest.Memory implement both.
type Store interface {
	// Load returns the records in force at now (Until after now) of the given backends, in any order.
	Load(ctx context.Context, backends []string, now time.Time) ([]Record, error)
	// Save writes r in one round trip, unless the record in force for the same backend and model is a rest
	// (any kind but RestRecovered) that ends later than r, or r is RestRecovered and the record in force is a
	// rest: a rest stands against a shorter one and against news of a recovery.
	Save(ctx context.Context, r Record, now time.Time) error
	// Claim makes owner the probe of the given models ("" is the whole backend) of backend, for at most ttl, in
	// one round trip. It claims none and reports false when one of them has a record in force of any kind
	// (returned, so the caller learns it) or another owner's probe that has not lapsed.
	Claim(ctx context.Context, backend string, models []string, owner string, ttl time.Duration, now time.Time) (bool, []Record, error)
	// Release ends the probes of the given models of backend that owner holds.
	Release(ctx context.Context, backend string, models []string, owner string) error
}

// Record is what one Client learned about one backend, or one model on it, as a Store keeps it. It holds no
// secret: a backend is named by its region name and a digest of its endpoint.
type Record struct {
	// Backend names the backend: its region name and 16 hex digits of its endpoint's SHA-256.
	Backend string `json:"-"`
	// Model is the model the record is about, or "" for the whole backend.
	Model string `json:"-"`
	// Deployment is the Azure deployment the client sends Model to, for a record about a model. A client that
	// sends Model to another deployment (during a rollout, say) ignores the record.
	Deployment string `json:"deployment,omitempty"`
	// Kind is why the backend rests: RestThrottled, RestFailing, RestUnreachable or RestMissing; or
	// RestRecovered, news that a probe was served. A Client ignores kinds it does not know, so that replicas of
	// different versions can share a Store.
	Kind string `json:"kind"`
	// Status is the HTTP status of the answer that caused the rest; 0 when there was none.
	Status int `json:"status,omitempty"`
	// Failures counts the consecutive failures that lengthen the backoff.
	Failures int `json:"failures,omitempty"`
	// Since is when the rest was set; an attempt that started earlier cannot end it.
	Since time.Time `json:"since"`
	// Until is when the rest ends, or when a missing model is tried again; the Store may forget the record then.
	Until time.Time `json:"until"`
}

// The kinds of Record.
const (
	RestThrottled   = "throttled"   // 429: the model rests on the region, then serves again
	RestFailing     = "failing"     // 5xx, timeouts, broken answers: the model rests, then one probe
	RestUnreachable = "unreachable" // no answer at all: the whole region rests, then one probe
	RestMissing     = "missing"     // 404: the region lacks the model
	// RestRecovered: a probe was served at Since, so the shared rests set before it are over, and the other
	// clients go back to the backend without a probe of their own. Until is a few Refresh periods later.
	RestRecovered = "recovered"
)

// StoreTiming bounds how a Client uses its Store. The zero value is the defaults.
type StoreTiming struct {
	// Refresh is how old a Client's copy of the Store's records may get: the first request after that loads
	// them again, while concurrent requests go on with the copy. Negative: every request loads.
	// Default (0): DefaultStoreRefresh.
	Refresh time.Duration
	// Timeout bounds every call to the Store. A call that fails or passes it leaves the request to the Client's
	// own state. Default (0): DefaultStoreTimeout.
	Timeout time.Duration
	// Retry is how long a Client goes on alone after a call failed before it calls the Store again.
	// Default (0): DefaultStoreRetry.
	Retry time.Duration
}

// Defaults of StoreTiming.
const (
	DefaultStoreRefresh = time.Second
	DefaultStoreTimeout = 50 * time.Millisecond
	DefaultStoreRetry   = 5 * time.Second
)

// WithStore shares what the client learns through s, with other clients using the same Store. The caller
// keeps ownership of s: Client.Close does not close it. Default: none; the client keeps its state to itself.
func WithStore(s Store) Option {
	return func(st *settings) { st.store = s }
}

// WithStoreTiming sets how often the client reloads its Store's records and how long it waits for the Store.
// Default: the zero StoreTiming, which is the defaults.
func WithStoreTiming(t StoreTiming) Option {
	return func(st *settings) { st.storeTiming = t }
}

// StoreOpener opens the Store at url, keeping its keys under prefix (empty for the Store's default). NewFromEnv
// calls it with EnvRedisURL and EnvRedisPrefix; redisstore.Opener is one.
type StoreOpener func(url, prefix string) (Store, error)

// WithStoreOpener lets NewFromEnv open the Store named by EnvRedisURL, as in
// failover.NewFromEnv(failover.WithStoreOpener(redisstore.Opener)). The client owns that Store: Client.Close
// closes it. When EnvRedisURL is not set, it does nothing, so one program runs with or without a Store. New
// ignores it. Default: none, and NewFromEnv refuses a set EnvRedisURL rather than ignore it.
func WithStoreOpener(open StoreOpener) Option {
	return func(st *settings) { st.storeOpener = open }
}

// storeErrs checks the Store settings.
func (s *settings) storeErrs() []error {
	var errs []error
	if s.storeTiming.Timeout < 0 {
		errs = append(errs, configErr("WithStoreTiming(Timeout)", "is %s; expected a positive duration, or 0 for the default", s.storeTiming.Timeout))
	}
	if s.storeTiming.Retry < 0 {
		errs = append(errs, configErr("WithStoreTiming(Retry)", "is %s; expected a positive duration, or 0 for the default", s.storeTiming.Retry))
	}
	if s.store == nil && s.storeURL != "" && s.storeOpener == nil {
		errs = append(errs, configErr(EnvRedisURL, "is set, but this program cannot open a store: pass failover.WithStoreOpener(redisstore.Opener) to NewFromEnv, or unset it"))
	}
	return errs
}

// openStore returns the Store the client shares through: the one given with WithStore, or else the one at
// EnvRedisURL, which the client then owns.
func (s *settings) openStore() (Store, io.Closer, error) {
	if s.store != nil || s.storeURL == "" || s.storeOpener == nil {
		return s.store, nil, nil
	}
	store, err := s.storeOpener(s.storeURL, s.storePrefix)
	if err != nil {
		return nil, nil, &ConfigError{Field: EnvRedisURL, Problem: withoutUserinfo(err.Error(), s.storeURL)}
	}
	return store, storeExtrasOf(store).closer, nil
}

// storeExtras are the optional interfaces a Store implements besides Store (see Store): each nil when it does
// not. Every capability a later version adds to sharing is found here, in one place.
type storeExtras struct {
	closer io.Closer
	owners OwnerStore // nil when the Store does not share owners
}

// storeExtrasOf finds the optional interfaces store implements.
func storeExtrasOf(store Store) storeExtras {
	var x storeExtras
	x.closer, _ = store.(io.Closer)
	x.owners, _ = store.(OwnerStore)
	return x
}

// withoutUserinfo is msg, an opener's error, without the user and password of raw, its URL: the opener should not
// quote the URL, and if it does, the password must not go further. It is removed as written, decoded, and quoted
// with escapes (%q). When raw has an "@" but does not parse with user info (a "/", "?" or "#" left unescaped in the
// password, say), no one knows where the password ends, and msg could hold a piece of it: it is withheld.
func withoutUserinfo(msg, raw string) string {
	if !strings.Contains(raw, "@") {
		return msg
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return "cannot be read with its password (details withheld: they could quote part of it); percent-encode any / ? # % or @ in the password"
	}
	// The user info as written (escapes may be spelt otherwise than url.URL would), and the password decoded.
	_, rest, _ := strings.Cut(raw, "//")
	written := rest[:max(strings.LastIndex(rest, "@"), 0)]
	secrets := []string{written, u.User.String()}
	if _, pw, ok := strings.Cut(written, ":"); ok {
		secrets = append(secrets, pw)
	}
	if pw, ok := u.User.Password(); ok {
		secrets = append(secrets, pw)
	}
	for _, secret := range secrets {
		quoted := strconv.Quote(secret)
		for _, form := range []string{secret, quoted[1 : len(quoted)-1]} {
			if form != "" {
				msg = strings.ReplaceAll(msg, form, "[redacted]")
			}
		}
	}
	return msg
}

// OwnerStore is an optional interface of a Store (see Store): it shares which backend holds an object that lives
// in one region only, a stored response or one of its items, a file or a batch, so that a replica sends a request
// about it where it is, though another replica made it.
type OwnerStore interface {
	// SaveOwners records, in one round trip, that backend (named as in Record.Backend) holds each of the objects
	// ids until now+ttl, replacing what was recorded for them. A ttl that is not positive removes what was
	// recorded for them.
	SaveOwners(ctx context.Context, ids []string, backend string, ttl time.Duration, now time.Time) error
	// LoadOwner returns the backend recorded for id and in force at now; "" and no error when there is none.
	LoadOwner(ctx context.Context, id string, now time.Time) (string, error)
}
