package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// JWTCause is why a token was refused; its name labels the failure counter in /metrics
// (mcloudtt_broker_jwt_auth_failures_total{cause=...}) and the log line.
type JWTCause int

// The causes of a refused token.
const (
	CauseMalformed     JWTCause = iota // not a JWT, or undecodable parts
	CauseAlgorithm                     // alg not usable with the key (none, HMAC, a mismatched key type)
	CauseSignature                     // no key of the device or provider verifies the signature
	CauseUnknownDevice                 // the device has no keys in the registry
	CauseDeviceID                      // the client id names no device (JWTConfig.DeviceOf said no)
	CauseKeyExpired                    // signed with a registry key past its expiry time
	CauseUnknownKey                    // the provider's key set has no key with the token's kid
	CauseAudience                      // aud is not the project id or the configured audience
	CauseIssuer                        // iss is not the identity provider's
	CauseExpired                       // exp is past (beyond the skew)
	CauseNotYetValid                   // iat or nbf in the future (beyond the skew)
	CauseMissingClaim                  // no iat or no exp
	CauseLifetime                      // exp-iat over the maximum lifetime
	CauseUsernameClaim                 // the provider's token lacks the user name claim
	CauseUnavailable                   // the device registry could not be read (Redis away)
	CauseInvalid                       // anything else the JWT library refused
	numJWTCauses
)

var jwtCauseNames = [numJWTCauses]string{"malformed", "algorithm", "signature", "unknown_device", "device_id",
	"key_expired", "unknown_key", "audience", "issuer", "expired", "not_yet_valid", "missing_claim", "lifetime",
	"username_claim", "registry_unavailable", "invalid"}

func (c JWTCause) String() string { return jwtCauseNames[c] }

// JWTError is a refused token: the cause and the details, never the token itself.
type JWTError struct {
	Cause JWTCause
	Err   error
}

func (e *JWTError) Error() string { return "jwt " + e.Cause.String() + ": " + e.Err.Error() }
func (e *JWTError) Unwrap() error { return e.Err }

func jwtErr(c JWTCause, format string, args ...any) *JWTError {
	return &JWTError{Cause: c, Err: fmt.Errorf(format, args...)}
}

// classify turns an error of the JWT library into a *JWTError. A cause set by a key function
// (inside the library's error) wins.
func classify(t *jwt.Token, err error) error {
	var je *JWTError
	if errors.As(err, &je) {
		return je
	}
	cause := CauseInvalid
	for _, m := range []struct {
		err   error
		cause JWTCause
	}{
		{jwt.ErrTokenMalformed, CauseMalformed},
		{jwt.ErrTokenExpired, CauseExpired},
		{jwt.ErrTokenUsedBeforeIssued, CauseNotYetValid},
		{jwt.ErrTokenNotValidYet, CauseNotYetValid},
		{jwt.ErrTokenInvalidAudience, CauseAudience},
		{jwt.ErrTokenInvalidIssuer, CauseIssuer},
		{jwt.ErrTokenRequiredClaimMissing, CauseMissingClaim},
		{jwt.ErrTokenSignatureInvalid, CauseSignature},
		{jwt.ErrTokenUnverifiable, CauseSignature},
	} {
		if errors.Is(err, m.err) {
			cause = m.cause
			break
		}
	}
	if cause == CauseSignature && t != nil && t.Method != nil && !slices.Contains(asymmetricAlgs, t.Method.Alg()) {
		cause = CauseAlgorithm // refused by the parser's list of methods
	}
	return &JWTError{Cause: cause, Err: err}
}

// asymmetricAlgs are the only algorithms a token may name: never "none", never HMAC (a public key
// is no secret).
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// algAllowed reports whether a token signed with alg may be verified with key. The algorithm
// follows from the key: RSA keys verify RS256 (the device registry, as Cloud IoT Core) or, from
// a JWKS (wide), any RS* and PS*; EC keys verify the ES* of their curve; Ed25519 keys EdDSA.
func algAllowed(alg string, key any, wide bool) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if !wide {
			return alg == "RS256"
		}
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384" && wide
		case elliptic.P521():
			return alg == "ES512" && wide
		}
	case ed25519.PublicKey:
		return alg == "EdDSA" && wide
	}
	return false
}
