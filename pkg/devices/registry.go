package devices

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// DefaultMaxKeys is how many keys a device may have unless configured otherwise (Cloud IoT Core
// allowed three, for rotation).
const DefaultMaxKeys = 3

// Registry is the device registry in Redis: one HASH per device (wire.Names.DeviceKeys), field
// = key fingerprint, value = a stored record (JSON). It is read at every CONNECT that presents a
// token, so an added or removed key counts on every replica at once, with no cache to
// invalidate; only the parsing of the PEM is cached (by its text, which cannot change meaning).
type Registry struct {
	rdb   redis.UniversalClient
	names wire.Names

	mu     sync.Mutex // guards parsed
	parsed map[string]crypto.PublicKey
}

// maxParsed bounds the cache of parsed keys; it starts afresh when full.
const maxParsed = 65536

// record is a key as stored in Redis.
type record struct {
	PEM     string `json:"pem"`
	Format  string `json:"format"`
	Expires int64  `json:"expires,omitempty"` // Unix seconds; 0: never
	Added   int64  `json:"added"`             // Unix seconds
}

// Stored is one key of a device, as List returns it.
type Stored struct {
	ID      string
	Format  string
	Expires time.Time // zero: never
	Added   time.Time
	PEM     string
}

// New returns the registry in the Redis that rdb reaches, under names.
func New(rdb redis.UniversalClient, names wire.Names) *Registry {
	return &Registry{rdb: rdb, names: names, parsed: make(map[string]crypto.PublicKey)}
}

// DeviceKey is one public key of a device, as token verification needs it.
type DeviceKey struct {
	ID      string           // its fingerprint
	Public  crypto.PublicKey // *rsa.PublicKey or *ecdsa.PublicKey
	Expires time.Time        // zero: never
}

// DeviceKeys returns the device's keys for token verification (the broker's
// auth.DeviceKeySource). A stored key that does not parse is skipped: Add never writes one.
func (r *Registry) DeviceKeys(ctx context.Context, device string) ([]DeviceKey, error) {
	if ValidateDeviceID(device) != nil {
		return nil, nil
	}
	m, err := r.rdb.HGetAll(ctx, r.names.DeviceKeys(device)).Result()
	if err != nil {
		return nil, err
	}
	keys := make([]DeviceKey, 0, len(m))
	for id, v := range m {
		var rec record
		if json.Unmarshal([]byte(v), &rec) != nil {
			continue
		}
		pub := r.public(rec.PEM)
		if pub == nil {
			continue
		}
		k := DeviceKey{ID: id, Public: pub}
		if rec.Expires != 0 {
			k.Expires = time.Unix(rec.Expires, 0)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// public parses a stored PEM, through the cache.
func (r *Registry) public(p string) crypto.PublicKey {
	r.mu.Lock()
	pub, ok := r.parsed[p]
	r.mu.Unlock()
	if ok {
		return pub
	}
	k, err := ParseKey([]byte(p))
	if err != nil {
		return nil
	}
	r.mu.Lock()
	if len(r.parsed) >= maxParsed {
		clear(r.parsed)
	}
	r.parsed[p] = k.Public
	r.mu.Unlock()
	return k.Public
}

// addScript adds or updates one key, refusing a new one beyond the limit; atomic, so two
// concurrent adds cannot pass it together. It returns 1 (added), 0 (updated) or -1 (full).
var addScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// ErrTooManyKeys is returned by Add when the device has its maximum of keys.
var ErrTooManyKeys = errors.New("the device has its maximum number of keys: remove one first")

// Add stores k for device, expiring at expires (zero: never), unless the device has maxKeys
// keys already. Adding a key the device has updates its expiry; updated says so.
func (r *Registry) Add(ctx context.Context, device string, k Key, expires time.Time, maxKeys int) (updated bool, err error) {
	if err := ValidateDeviceID(device); err != nil {
		return false, err
	}
	rec := record{PEM: k.PEM, Format: k.Format, Added: time.Now().Unix()}
	if !expires.IsZero() {
		rec.Expires = expires.Unix()
	}
	v, _ := json.Marshal(rec)
	n, err := addScript.Run(ctx, r.rdb, []string{r.names.DeviceKeys(device)}, k.ID, v, maxKeys).Int()
	switch {
	case err != nil:
		return false, err
	case n < 0:
		return false, fmt.Errorf("%w (%d)", ErrTooManyKeys, maxKeys)
	}
	return n == 0, nil
}

// Remove deletes the key with fingerprint id (or, with id "all", every key) of device; it
// reports how many keys went.
func (r *Registry) Remove(ctx context.Context, device, id string) (int64, error) {
	if err := ValidateDeviceID(device); err != nil {
		return 0, err
	}
	key := r.names.DeviceKeys(device)
	if id == "all" {
		n, err := r.rdb.HLen(ctx, key).Result()
		if err != nil {
			return 0, err
		}
		return n, r.rdb.Del(ctx, key).Err()
	}
	return r.rdb.HDel(ctx, key, id).Result()
}

// List returns the device's keys, oldest first.
func (r *Registry) List(ctx context.Context, device string) ([]Stored, error) {
	if err := ValidateDeviceID(device); err != nil {
		return nil, err
	}
	m, err := r.rdb.HGetAll(ctx, r.names.DeviceKeys(device)).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Stored, 0, len(m))
	for id, v := range m {
		var rec record
		if err := json.Unmarshal([]byte(v), &rec); err != nil {
			return nil, fmt.Errorf("key %s: unreadable record: %w", id, err)
		}
		s := Stored{ID: id, Format: rec.Format, Added: time.Unix(rec.Added, 0), PEM: rec.PEM}
		if rec.Expires != 0 {
			s.Expires = time.Unix(rec.Expires, 0)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Added.Equal(out[j].Added) {
			return out[i].Added.Before(out[j].Added)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Dial returns a Redis client for the registry at addrs (several: a Redis Cluster), logging in
// and speaking TLS as env says, as the broker's bus does.
func Dial(addrs []string, env redisconn.Env) (redis.UniversalClient, error) {
	conn, err := redisconn.New(env.Options())
	if err != nil {
		return nil, err
	}
	o := &redis.UniversalOptions{Addrs: addrs}
	conn.UniversalClient(o)
	return redis.NewUniversalClient(o), nil
}
