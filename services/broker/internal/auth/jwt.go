package auth

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcloudtt/mcloudtt/pkg/devices"
)

// JWT authenticates clients whose MQTT password is a JSON Web Token (RFC 7519), signed with a
// public key from one of two sources:
//
//   - the device registry (JWTConfig.Registry): up to a few public keys per device, as in Google
//     Cloud IoT Core. The device is the client id (or what JWTConfig.DeviceOf makes of it); the
//     token's aud must be the project id; the client's user name becomes the device id.
//   - a JWKS URL (JWTConfig.JWKS) of an identity provider: the token's iss and aud must be the
//     configured ones, and one of its claims becomes the user name, so ACL %u patterns apply.
//
// With both, a token whose iss is the identity provider's goes to the JWKS and every other to the
// registry. The signing algorithm follows from the key (RSA: RS256; EC: ES256/ES384/ES512 by
// curve; from a JWKS also PS* and EdDSA): a token's alg header only has to agree with it, so
// "none" and HMAC tokens made with a public key as the secret are refused. Every token needs iat
// and exp: iat not in the future, exp not past (each with JWTConfig.Skew), and exp-iat at most
// JWTConfig.MaxLifetime. Failures are counted by cause (JWTCause) for /metrics.
type JWT struct {
	cfg    JWTConfig
	jwks   *jwksSource // nil: no JWKS
	counts [numJWTCauses]atomic.Int64
	ok     [2]atomic.Int64 // accepted: registry, jwks
}

// JWTConfig configures JWT authentication. At least one of Registry and JWKS is set.
type JWTConfig struct {
	// Registry holds the devices' public keys; nil: no device registry.
	Registry DeviceKeySource
	// ProjectID is the aud that registry tokens must carry (Cloud IoT Core's project id).
	ProjectID string
	// JWKS is the identity provider's key set; nil: none.
	JWKS *JWKSConfig
	// Skew is the clock difference tolerated on iat and exp.
	Skew time.Duration
	// MaxLifetime bounds exp-iat (24h in Cloud IoT Core).
	MaxLifetime time.Duration
	// DeviceOf makes the registry's device id of a client id; ok false refuses the client. nil:
	// the client id is the device id.
	DeviceOf func(clientID string) (device string, ok bool)
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// DeviceKeySource returns the public keys registered for a device (package devices keeps them in
// Redis). A device without keys is not an error: it returns none.
type DeviceKeySource interface {
	DeviceKeys(ctx context.Context, device string) ([]DeviceKey, error)
}

// DeviceKey is one public key of a device.
type DeviceKey = devices.DeviceKey

// JWTIdentity is who a verified token says the client is.
type JWTIdentity struct {
	Username string    // the device id (registry) or the configured claim (JWKS)
	Expires  time.Time // when the token stops being valid (exp plus the skew): the connection ends then
	FromJWKS bool
}

// maxTokenLength bounds the tokens parsed; longer passwords are refused before any decoding.
const maxTokenLength = 8192

// NewJWT returns a JWT authenticator. With a JWKS it starts fetching the key set, refreshing it
// until ctx ends; an identity provider that cannot be reached at start is not an error (its keys
// arrive with a later refresh).
func NewJWT(ctx context.Context, cfg JWTConfig) (*JWT, error) {
	if cfg.Registry == nil && cfg.JWKS == nil {
		return nil, errors.New("jwt: no key source (device registry or JWKS URL)")
	}
	if cfg.Registry != nil && cfg.ProjectID == "" {
		return nil, errors.New("jwt: the device registry needs a project id (the tokens' aud)")
	}
	if cfg.Skew < 0 || cfg.MaxLifetime <= 0 {
		return nil, errors.New("jwt: skew must not be negative and the maximum lifetime must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	j := &JWT{cfg: cfg}
	if cfg.JWKS != nil {
		src, err := newJWKSSource(ctx, *cfg.JWKS)
		if err != nil {
			return nil, err
		}
		j.jwks = src
	}
	return j, nil
}

// LooksLikeJWT reports whether a password has the shape of a compact JWS: three base64url parts
// separated by dots. Only such passwords are given to Verify.
func LooksLikeJWT(p []byte) bool {
	if len(p) < 5 || len(p) > maxTokenLength {
		return false
	}
	dots := 0
	for _, c := range p {
		switch {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// Verify checks token for clientID. The error is a *JWTError naming the cause; it never contains
// the token.
func (j *JWT) Verify(ctx context.Context, clientID string, token []byte) (JWTIdentity, error) {
	id, err := j.verify(ctx, clientID, string(token))
	if err != nil {
		var je *JWTError
		if !errors.As(err, &je) {
			je = &JWTError{Cause: CauseInvalid, Err: err}
		}
		j.counts[je.Cause].Add(1)
		return JWTIdentity{}, je
	}
	if id.FromJWKS {
		j.ok[1].Add(1)
	} else {
		j.ok[0].Add(1)
	}
	return id, nil
}

func (j *JWT) verify(ctx context.Context, clientID, token string) (JWTIdentity, error) {
	if len(token) > maxTokenLength {
		return JWTIdentity{}, jwtErr(CauseMalformed, "token longer than %d bytes", maxTokenLength)
	}
	if j.jwks != nil && (j.cfg.Registry == nil || j.issuedByProvider(token)) {
		return j.verifyJWKS(ctx, token)
	}
	return j.verifyRegistry(ctx, clientID, token)
}

// issuedByProvider reports whether the token's (unverified) iss is the identity provider's: it
// only picks the key source, whose checks then decide.
func (j *JWT) issuedByProvider(token string) bool {
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil {
		return false
	}
	return claims.Issuer == j.jwks.cfg.Issuer
}

// verifyRegistry checks a token against the keys of the client's device.
func (j *JWT) verifyRegistry(ctx context.Context, clientID, token string) (JWTIdentity, error) {
	device, ok := clientID, true
	if j.cfg.DeviceOf != nil {
		device, ok = j.cfg.DeviceOf(clientID)
	}
	if !ok || device == "" {
		return JWTIdentity{}, jwtErr(CauseDeviceID, "client id names no device")
	}
	keys, err := j.cfg.Registry.DeviceKeys(ctx, device)
	if err != nil {
		return JWTIdentity{}, &JWTError{Cause: CauseUnavailable, Err: fmt.Errorf("device registry: %w", err)}
	}
	if len(keys) == 0 {
		return JWTIdentity{}, jwtErr(CauseUnknownDevice, "device %q has no keys", device)
	}
	now := j.cfg.Now()
	kf := func(t *jwt.Token) (any, error) { return registryKeys(t, keys, now) }
	claims, err := j.parse(token, kf, jwt.WithAudience(j.cfg.ProjectID))
	if err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) && signedByExpired(token, keys, now) {
			return JWTIdentity{}, jwtErr(CauseKeyExpired, "signed with an expired key of device %q", device)
		}
		return JWTIdentity{}, err
	}
	return JWTIdentity{Username: device, Expires: claims.ExpiresAt.Add(j.cfg.Skew)}, nil
}

// verifyJWKS checks a token against the identity provider's keys.
func (j *JWT) verifyJWKS(ctx context.Context, token string) (JWTIdentity, error) {
	c := j.jwks.cfg
	var user string
	claims, err := j.parseMap(token, j.jwks.keyfunc(ctx), &user, jwt.WithIssuer(c.Issuer), jwt.WithAudience(c.Audience))
	if err != nil {
		return JWTIdentity{}, err
	}
	return JWTIdentity{Username: user, Expires: claims.ExpiresAt.Add(j.cfg.Skew), FromJWKS: true}, nil
}

// parse verifies token with kf and the common claim checks plus opts.
func (j *JWT) parse(token string, kf jwt.Keyfunc, opts ...jwt.ParserOption) (*jwt.RegisteredClaims, error) {
	var claims jwt.RegisteredClaims
	t, err := j.parser(opts...).ParseWithClaims(token, &claims, kf)
	if err != nil {
		return nil, classify(t, err)
	}
	return &claims, j.checkLifetime(&claims)
}

// parseMap is parse for a token whose claim j.jwks.cfg.UsernameClaim becomes *user.
func (j *JWT) parseMap(token string, kf jwt.Keyfunc, user *string, opts ...jwt.ParserOption) (*jwt.RegisteredClaims, error) {
	claims := jwt.MapClaims{}
	if t, err := j.parser(opts...).ParseWithClaims(token, claims, kf); err != nil {
		return nil, classify(t, err)
	}
	var rc jwt.RegisteredClaims
	rc.IssuedAt, _ = claims.GetIssuedAt()
	rc.ExpiresAt, _ = claims.GetExpirationTime()
	if err := j.checkLifetime(&rc); err != nil {
		return nil, err
	}
	name, _ := claims[j.jwks.cfg.UsernameClaim].(string)
	if name == "" {
		return nil, jwtErr(CauseUsernameClaim, "claim %q is missing, empty or not a string", j.jwks.cfg.UsernameClaim)
	}
	*user = name
	return &rc, nil
}

func (j *JWT) parser(opts ...jwt.ParserOption) *jwt.Parser {
	opts = append(opts, jwt.WithValidMethods(asymmetricAlgs), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithLeeway(j.cfg.Skew), jwt.WithTimeFunc(j.cfg.Now))
	return jwt.NewParser(opts...)
}

// checkLifetime requires iat (exp was required by the parser) and exp-iat within MaxLifetime.
func (j *JWT) checkLifetime(c *jwt.RegisteredClaims) error {
	if c.IssuedAt == nil || c.ExpiresAt == nil {
		return jwtErr(CauseMissingClaim, "iat and exp are required")
	}
	if life := c.ExpiresAt.Sub(c.IssuedAt.Time); life > j.cfg.MaxLifetime {
		return jwtErr(CauseLifetime, "lifetime %s over the maximum %s", life, j.cfg.MaxLifetime)
	}
	return nil
}

// signedByExpired reports whether one of the device's expired keys verifies the token's signature:
// it tells "key expired" from "wrong key" once the valid keys have failed.
func signedByExpired(token string, keys []DeviceKey, now time.Time) bool {
	t, parts, err := jwt.NewParser().ParseUnverified(token, &jwt.RegisteredClaims{})
	if err != nil || len(parts) != 3 {
		return false
	}
	text := parts[0] + "." + parts[1]
	for _, k := range keys {
		if !k.Expires.IsZero() && !now.Before(k.Expires) && algAllowed(t.Method.Alg(), k.Public, false) &&
			t.Method.Verify(text, t.Signature, k.Public) == nil {
			return true
		}
	}
	return false
}

// registryKeys is the jwt.Keyfunc of the device registry: the device's keys that are not expired
// and whose algorithm is the token's.
func registryKeys(t *jwt.Token, keys []DeviceKey, now time.Time) (any, error) {
	alg := t.Method.Alg()
	var set jwt.VerificationKeySet
	compatible := 0
	for _, k := range keys {
		if !algAllowed(alg, k.Public, false) {
			continue
		}
		compatible++
		if k.Expires.IsZero() || now.Before(k.Expires) {
			set.Keys = append(set.Keys, k.Public)
		}
	}
	switch {
	case compatible == 0:
		return nil, jwtErr(CauseAlgorithm, "no key of the device is for %s", alg)
	case len(set.Keys) == 0:
		return nil, jwtErr(CauseKeyExpired, "every %s key of the device has expired", alg)
	}
	return set, nil
}
