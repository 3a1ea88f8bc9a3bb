package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// JWKSConfig is an identity provider's key set.
type JWKSConfig struct {
	URL      string // https://...; fetched at start and every RefreshInterval
	Issuer   string // the iss its tokens must carry
	Audience string // the aud its tokens must carry
	// UsernameClaim is the claim that becomes the client's user name ("sub" usually).
	UsernameClaim string
	// Client fetches the key set (its TLS settings say which CAs are trusted); nil:
	// http.DefaultClient.
	Client *http.Client
	// RefreshInterval is how often the key set is fetched again; 0: hourly.
	RefreshInterval time.Duration
	// RefreshMinInterval bounds the extra fetches a token with an unknown kid triggers (a
	// rotation at the provider): at most one per interval; 0: five minutes. A CONNECT waits for
	// that limit and the fetch together at most jwksHTTPTimeout: when the next fetch is further
	// away, the unknown key is refused at once.
	RefreshMinInterval time.Duration
	// OnRefreshError is told when a fetch fails; the keys fetched before stay in use.
	OnRefreshError func(error)
}

// jwksSource holds the provider's keys, fetched and cached by keyfunc/jwkset.
type jwksSource struct {
	cfg     JWKSConfig
	storage jwkset.Storage
}

// jwksHTTPTimeout bounds one fetch of the key set, including one triggered by a CONNECT.
const jwksHTTPTimeout = 5 * time.Second

func newJWKSSource(ctx context.Context, c JWKSConfig) (*jwksSource, error) {
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = time.Hour
	}
	if c.RefreshMinInterval <= 0 {
		c.RefreshMinInterval = 5 * time.Minute
	}
	if c.UsernameClaim == "" {
		c.UsernameClaim = "sub"
	}
	onErr := c.OnRefreshError
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.URL}, keyfunc.Override{
		Client:          c.Client,
		HTTPTimeout:     jwksHTTPTimeout,
		RefreshInterval: c.RefreshInterval,
		// One fetch for unknown kids per RefreshMinInterval. jwkset bounds the wait for the limiter
		// and the fetch that follows with one deadline, RateLimitWaitMax; the limiter refuses at
		// once a wait that would pass it.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(c.RefreshMinInterval), 1),
		RateLimitWaitMax:  jwksHTTPTimeout,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				if onErr != nil {
					onErr(err)
				}
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", c.URL, err)
	}
	return &jwksSource{cfg: c, storage: kf.Storage()}, nil
}

// keyfunc picks the provider's key for a token: by kid (an unknown kid fetches the set again,
// within RefreshMinInterval), or every key when the token has none. The key decides which
// algorithms are acceptable (algAllowed); a JWK's own alg, when it has one, must be the token's.
func (s *jwksSource) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if !slices.Contains(asymmetricAlgs, alg) {
			return nil, jwtErr(CauseAlgorithm, "alg %q is not accepted", alg)
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return s.allKeys(ctx, alg)
		}
		k, err := s.storage.KeyRead(ctx, kid)
		if err != nil {
			return nil, &JWTError{Cause: CauseUnknownKey, Err: fmt.Errorf("kid %q: %w", kid, err)}
		}
		pub, err := usableKey(k, alg)
		if err != nil {
			return nil, err
		}
		return pub, nil
	}
}

// allKeys is the set of the provider's keys usable for alg.
func (s *jwksSource) allKeys(ctx context.Context, alg string) (any, error) {
	all, err := s.storage.KeyReadAll(ctx)
	if err != nil {
		return nil, &JWTError{Cause: CauseUnknownKey, Err: err}
	}
	var set jwt.VerificationKeySet
	for _, k := range all {
		if pub, err := usableKey(k, alg); err == nil {
			set.Keys = append(set.Keys, pub)
		}
	}
	if len(set.Keys) == 0 {
		return nil, jwtErr(CauseUnknownKey, "no key of the provider is for %s", alg)
	}
	return set, nil
}

var errKeyForEncryption = errors.New("the key is for encryption")

// usableKey returns the public key of k if it may verify a token signed with alg.
func usableKey(k jwkset.JWK, alg string) (crypto.PublicKey, error) {
	m := k.Marshal()
	if a := m.ALG.String(); a != "" && a != alg {
		return nil, jwtErr(CauseAlgorithm, "key %q is for %s, the token says %s", m.KID, a, alg)
	}
	if m.USE == jwkset.UseEnc {
		return nil, &JWTError{Cause: CauseAlgorithm, Err: errKeyForEncryption}
	}
	key := k.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public() // never verify with private material a key set should not carry
	}
	if !algAllowed(alg, key, true) {
		return nil, jwtErr(CauseAlgorithm, "key %q cannot verify %s", m.KID, alg)
	}
	return key, nil
}
