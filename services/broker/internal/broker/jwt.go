package broker

import (
	"context"
	"errors"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
)

// JWT authentication at CONNECT, and the end of the connection when its token expires. The order
// of the methods is authenticate's.

// jwtLookupTimeout bounds the key lookup of one CONNECT (the device registry in Redis, or an
// identity provider's key set fetched again for an unknown kid).
const jwtLookupTimeout = 5 * time.Second

// usesJWT reports whether the CONNECT's password goes to JWT authentication: JWT is on, the
// password looks like a token, and the user name (if any) is not one of the password file's.
func (c *client) usesJWT(p *mqtt.Connect, hasUsername bool) bool {
	if c.srv.jwt == nil || !p.PasswordFlag || !auth.LooksLikeJWT(p.Password) {
		return false
	}
	return !hasUsername || c.srv.auth == nil || !c.srv.auth.HasUser(c.username)
}

// authenticateJWT verifies the token and makes its identity the client's user name. A refused
// token is answered as a refused password (3.x 0x04, v5 0x86; without a user name 3.x 0x05, v5
// 0x87); a registry that cannot be read as an unavailable server (3.x 0x03, v5 0x88). The log
// line names the cause, never the token.
func (c *client) authenticateJWT(p *mqtt.Connect, hasUsername bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), jwtLookupTimeout)
	id, err := c.srv.jwt.Verify(ctx, c.id, p.Password)
	cancel()
	if err == nil {
		c.username = id.Username
		if !id.Expires.IsZero() {
			c.tokenExpires = &id.Expires
		}
		return true
	}
	var je *auth.JWTError
	if !errors.As(err, &je) {
		je = &auth.JWTError{Cause: auth.CauseInvalid, Err: err}
	}
	ev := c.event(c.srv.log.Info())
	if je.Cause == auth.CauseUnavailable {
		ev = c.event(c.srv.log.Warn())
	}
	ev.Str("cause", je.Cause.String()).Str("error", je.Err.Error()).Msg("connect refused: JWT not accepted")
	if je.Cause == auth.CauseUnavailable {
		c.refuse(c.v3Or(mqtt.V3ServerUnavailable, mqtt.ServerUnavailable))
	} else {
		c.refuseCredentials(hasUsername)
	}
	return false
}

// armTokenTimer closes the connection when its token expires: a v5 client hears DISCONNECT 0xA0
// (Maximum connect time: the connection may not last longer, and a new CONNECT with a fresh
// token is welcome), a 3.x client is disconnected.
func (c *client) armTokenTimer() {
	if c.tokenExpires == nil {
		return
	}
	c.tokenTimer = time.AfterFunc(max(time.Until(*c.tokenExpires), 0), func() {
		c.setReason(discCredentialsExpired)
		c.event(c.srv.log.Info()).Msg("token expired: connection closed")
		c.sendDisconnect(mqtt.MaximumConnectTime)
	})
}

func (c *client) stopTokenTimer() {
	if c.tokenTimer != nil {
		c.tokenTimer.Stop()
	}
}
