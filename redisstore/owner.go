package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aoai-failover/failover"
)

// OwnerStore is an optional interface a failover.Store may implement (see failover.Store).
var _ failover.OwnerStore = (*Store)(nil)

// Each object's owner is one string key, "<prefix>:owner:<id>", with "%" and "@" in the id written %25 and %40, so
// that no id names the hash of a backend, which always ends in "@" and 16 hex digits, whatever its region's
// name. Its value is "<until> <backend>": until is the end on the Client's clock, in Unix nanoseconds, with which
// LoadOwner compares the Client's now; the key's own expiry is relative (PX), so the clocks of Redis and the
// fleet need not agree, as for the rests (see scripts.go).

// ownerEscaper writes an id so that its key holds no "@", and stays one to one.
var ownerEscaper = strings.NewReplacer("%", "%25", "@", "%40")

// ownerKey is the key of the owner of the object id.
func (s *Store) ownerKey(id string) string { return s.prefix + ":owner:" + ownerEscaper.Replace(id) }

// SaveOwners implements failover.OwnerStore in one round trip: backend holds each of ids until now+ttl,
// replacing what was saved for it, with one SET … PX each (pipelined when there are several); a ttl that is not
// positive deletes what was saved, with one DEL.
func (s *Store) SaveOwners(ctx context.Context, ids []string, backend string, ttl time.Duration, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.ownerKey(id)
	}
	if ttl <= 0 {
		if err := s.client.Del(ctx, keys...).Err(); err != nil {
			return fmt.Errorf("redisstore: save owners: %w", err)
		}
		return nil
	}
	value := strconv.FormatInt(now.Add(ttl).UnixNano(), 10) + " " + backend
	ms := int64((ttl + time.Millisecond - 1) / time.Millisecond) // rounded up: the key must not go before the owner ends
	if len(keys) == 1 {
		if err := s.client.Do(ctx, "set", keys[0], value, "px", ms).Err(); err != nil {
			return fmt.Errorf("redisstore: save owners: %w", err)
		}
		return nil
	}
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, key := range keys {
			p.Do(ctx, "set", key, value, "px", ms)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstore: save owners: %w", err)
	}
	return nil
}

// LoadOwner implements failover.OwnerStore with one GET, in one round trip: the backend saved for id when it holds
// id after now, by the Client's clock; "" when none does, or when the key holds what this package did not write.
func (s *Store) LoadOwner(ctx context.Context, id string, now time.Time) (string, error) {
	value, err := s.client.Get(ctx, s.ownerKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("redisstore: load owner: %w", err)
	}
	until, backend, ok := strings.Cut(value, " ")
	if !ok {
		return "", nil
	}
	ns, err := strconv.ParseInt(until, 10, 64)
	if err != nil || !time.Unix(0, ns).After(now) {
		return "", nil
	}
	return backend, nil
}
