package app

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/devices"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// newJWT makes the JWT authenticator when BROKER_JWT_ENABLED: the device registry gets its own
// Redis client (the bus is made after the server), the identity provider's key set is fetched
// in the background until ctx ends. rdb is nil without a registry; the caller closes it.
// deviceOf names the device of a client id for the registry (nil: the client id itself).
func newJWT(ctx context.Context, cfg config.Config, r *replica, deviceOf func(string) (string, bool)) (j *auth.JWT, rdb redis.UniversalClient, err error) {
	if !cfg.JWTEnabled {
		return nil, nil, nil
	}
	jc := auth.JWTConfig{Skew: cfg.JWTClockSkew, MaxLifetime: cfg.JWTMaxLifetime, ProjectID: cfg.JWTProjectID,
		DeviceOf: deviceOf}
	if cfg.JWTRegistry {
		if rdb, err = devices.Dial(cfg.RedisAddrs, cfg.Env); err != nil {
			return nil, nil, fmt.Errorf("%s_JWT_REGISTRY: %w", config.Prefix, err)
		}
		jc.Registry = devices.New(rdb, wire.NewNames(""))
	}
	if cfg.JWTJWKSURL != "" {
		client, err := cfg.JWKSClient()
		if err != nil {
			return nil, rdb, fmt.Errorf("%s_JWT_JWKS_CA_FILE: %w", config.Prefix, err)
		}
		log := r.log.With().Str("jwks_url", cfg.JWTJWKSURL).Logger()
		jc.JWKS = &auth.JWKSConfig{URL: cfg.JWTJWKSURL, Issuer: cfg.JWTJWKSIssuer, Audience: cfg.JWTJWKSAudience,
			UsernameClaim: cfg.JWTJWKSUsernameClaim, Client: client, RefreshInterval: cfg.JWTJWKSRefreshInterval,
			RefreshMinInterval: cfg.JWTJWKSRefreshMinInterval,
			OnRefreshError: func(err error) {
				log.Warn().Err(err).Msg("JWKS not fetched; the keys fetched before stay in use")
			}}
	}
	if j, err = auth.NewJWT(ctx, jc); err != nil {
		return nil, rdb, err
	}
	r.log.Info().Bool("registry", cfg.JWTRegistry).Str("jwks_url", cfg.JWTJWKSURL).
		Dur("clock_skew", cfg.JWTClockSkew).Dur("max_lifetime", cfg.JWTMaxLifetime).
		Msg("JWT authentication on: a client whose user name is not in the password file may send a token as its password")
	return j, rdb, nil
}
