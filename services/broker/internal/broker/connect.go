package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"net"
	"strings"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
)

// readConnect reads and answers the first packet, which must be CONNECT [MQTT-3.1.0-1].
func (c *client) readConnect() error {
	fh, body, err := c.readPacket()
	c.releaseSlot() // the handshake and the packet are read: what follows needs no slot
	if err != nil {
		return err
	}
	if fh.Type != mqtt.CONNECT {
		c.closeConn()
		return errors.New("first packet is not CONNECT [MQTT-3.1.0-1]")
	}
	var p mqtt.Connect
	if err := p.Decode(fh.Flags, body, 0); err != nil {
		var me *mqtt.Error
		if errors.As(err, &me) && me.Code == mqtt.UnsupportedProtocolVersion {
			// Answer in the version the client can read: 3.x return code 0x01 unless it asked for
			// 5.0 [MQTT-3.1.2-2].
			c.version = mqtt.V311
			c.refuse(mqtt.V3UnacceptableProtocolVersion)
			return err
		}
		if p.Version == mqtt.V5 {
			c.version = mqtt.V5
			code := mqtt.MalformedPacket
			if me != nil {
				code = me.Code
			}
			c.refuse(code)
			return err
		}
		c.closeConn()
		return err
	}
	c.version = p.Version
	c.id = strings.Clone(p.ClientID) // not a slice of the CONNECT packet, which can go
	return c.accept(&p)
}

// refuse sends a failure CONNACK and closes the connection [MQTT-3.2.2-6].
func (c *client) refuse(code mqtt.ReasonCode) {
	c.setReason(discRefused)
	c.writePacket(&mqtt.Connack{ReasonCode: code})
	c.lingerClose()
}

// v3Or picks the 3.x return code or the v5 reason code for a refused CONNECT.
func (c *client) v3Or(v3, v5 mqtt.ReasonCode) mqtt.ReasonCode {
	if c.version == mqtt.V5 {
		return v5
	}
	return v3
}

func newClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "auto-" + hex.EncodeToString(b[:])
}

// accept applies a decoded CONNECT: identity and authentication, will, negotiated limits, then
// session attach or takeover, CONNACK, resend.
func (c *client) accept(p *mqtt.Connect) error {
	cfg := &c.srv.cfg
	var ack mqtt.Connack
	assigned, ok := c.identify(p)
	if !ok || !c.identifyDevice(p) || !c.authenticate(p) || c.refuseBanned() || !c.buildWill(p) {
		return errClientGone
	}
	c.negotiate(p, assigned, &ack)
	c.limitDevice(p, &ack)

	if cfg.MaxConnections > 0 && c.srv.stats.clients.Load() >= int64(cfg.MaxConnections) {
		c.refuse(c.v3Or(mqtt.V3ServerUnavailable, mqtt.ServerBusy))
		return errClientGone
	}
	if cfg.MaxPublishRate > 0 {
		c.rate = newTokenBucket(cfg.MaxPublishRate, cfg.PublishBurst)
	}

	if err := c.srv.attach(c, p.CleanStart, &ack); err != nil {
		c.event(c.srv.log.Warn()).Err(err).Msg("connect refused: session not available")
		c.refuse(c.v3Or(mqtt.V3ServerUnavailable, mqtt.ServerUnavailable))
		return errClientGone
	}
	c.flushKicks()
	c.armTokenTimer()
	if c.keepAlive == 0 {
		enableTCPKeepAlive(c.conn)
	}
	c.event(c.srv.log.Debug()).Str("version", c.version.String()).Bool("session_present", ack.SessionPresent).Msg("client connected")
	return nil
}

// identify refuses enhanced authentication and a client id the version does not allow to be
// empty, and assigns one to an empty id otherwise (assigned). ok is false when it refused.
func (c *client) identify(p *mqtt.Connect) (assigned, ok bool) {
	if c.version == mqtt.V5 && p.Properties.Has(mqtt.PropAuthMethod) {
		// Enhanced authentication is not offered [MQTT-4.12.0-1].
		c.refuse(mqtt.BadAuthenticationMethod)
		return false, false
	}
	if p.ClientID == "" {
		if c.version != mqtt.V5 && (!p.CleanStart || c.version == mqtt.V31) {
			// [MQTT-3.1.3-8]: an empty id needs Clean Session in 3.1.1 (3.1 requires an id).
			c.refuse(mqtt.V3IdentifierRejected)
			return false, false
		}
		c.id = newClientID()
		assigned = true
	}
	return assigned, true
}

// authenticate sets the client's user name and checks its credentials [MQTT-3.1.4-2], trying the
// methods in this order:
//  1. a verified client certificate's common name stands for the user name (mosquitto's
//     use_identity_as_username), and nothing else is checked;
//  2. a user name the password file has: the password file decides;
//  3. with JWT authentication on, a password shaped like a JWT: the token decides (jwt.go), and
//     its device or claim becomes the user name;
//  4. otherwise the password file and BROKER_ALLOW_ANONYMOUS decide (auth.Store).
//
// It returns false when it refused the connection.
func (c *client) authenticate(p *mqtt.Connect) bool {
	c.username = p.Username
	hasUsername := p.UsernameFlag
	byCert := false
	if c.srv.cfg.TLSCNAsUsername && c.srv.peerName != nil {
		if cn, ok := c.srv.peerName(c.conn); ok {
			c.username, hasUsername, byCert = cn, true, true
		} else {
			c.refuse(c.v3Or(mqtt.V3NotAuthorized, mqtt.NotAuthorized))
			return false
		}
	}
	if !byCert && c.usesJWT(p, hasUsername) {
		return c.authenticateJWT(p, hasUsername)
	}
	if c.srv.auth != nil && !byCert && !c.srv.auth.Authenticate(c.username, p.Password, hasUsername) {
		if c.srv.auth.RefusesEveryone() {
			// No way to authenticate is configured: mosquitto 2.0's answer, whatever was sent.
			c.refuse(c.v3Or(mqtt.V3NotAuthorized, mqtt.BadUserNameOrPassword))
		} else {
			c.refuseCredentials(hasUsername)
		}
		return false
	}
	return true
}

// refuseCredentials answers credentials that were not accepted (a password, a token): with a
// user name, bad user name or password (3.x 0x04, v5 0x86); without, not authorized (3.x 0x05,
// v5 0x87).
func (c *client) refuseCredentials(hasUsername bool) {
	if hasUsername {
		c.refuse(c.v3Or(mqtt.V3BadUsernameOrPassword, mqtt.BadUserNameOrPassword))
		return
	}
	c.refuse(c.v3Or(mqtt.V3NotAuthorized, mqtt.NotAuthorized))
}

// buildWill keeps the CONNECT's will message, if any. It returns false when it refused the
// connection (a will topic that is not a valid topic name, or a $-topic).
func (c *client) buildWill(p *mqtt.Connect) bool {
	if !p.WillFlag {
		return true
	}
	if err := topic.ValidateName(p.WillTopic); err != nil || topic.IsSystem(p.WillTopic) {
		c.refuse(c.v3Or(mqtt.V3NotAuthorized, mqtt.TopicNameInvalid))
		return false
	}
	will := &message{Topic: p.WillTopic, Payload: p.WillPayload, QoS: p.WillQoS, Retain: p.WillRetain,
		From: c.id, Username: c.username, Created: time.Now()}
	if c.version == mqtt.V5 {
		wp := &p.WillProperties
		will.Props = newMessageProps(wp)
		if wp.Has(mqtt.PropMessageExpiry) {
			// Counted from when the will is published; see publishWill.
			will.Expires = time.Time{}.Add(time.Duration(wp.MessageExpiry) * time.Second)
		}
		c.willDelay = time.Duration(wp.WillDelay) * time.Second
	}
	c.will = will
	return true
}

// negotiate settles the connection's keep alive, send quota and session expiry, and for v5 the
// client's limits, with the CONNACK properties that tell the client the broker's.
func (c *client) negotiate(p *mqtt.Connect, assigned bool, ack *mqtt.Connack) {
	cfg := &c.srv.cfg
	c.keepAlive = time.Duration(p.KeepAlive) * time.Second
	// 3.x has no way to tell a client another keep alive, so the cap applies to v5 clients, who
	// are told it as Server Keep Alive; a 3.x client keeps what it asked for.
	if c.version == mqtt.V5 && cfg.MaxKeepAlive > 0 && (p.KeepAlive == 0 || p.KeepAlive > cfg.MaxKeepAlive) {
		c.keepAlive = time.Duration(cfg.MaxKeepAlive) * time.Second
		ack.Properties.ServerKeepAlive = cfg.MaxKeepAlive // [MQTT-3.2.2-21]
		ack.Properties.Set(mqtt.PropServerKeepAlive)
	}
	c.sendQuota = int(cfg.MaxInflight)
	if c.version == mqtt.V5 {
		c.negotiateV5(p, assigned, ack)
	} else if !p.CleanStart {
		// A 3.x persistent session lasts until a clean session ends it, unless capped.
		c.sessExpiry = neverExpire
		if cfg.MaxSessionExpiry > 0 {
			c.sessExpiry = time.Duration(cfg.MaxSessionExpiry) * time.Second
		}
	}
}

// negotiateV5 applies a v5 CONNECT's properties and sets the CONNACK's.
func (c *client) negotiateV5(p *mqtt.Connect, assigned bool, ack *mqtt.Connack) {
	cfg := &c.srv.cfg
	pp := &p.Properties
	if pp.Has(mqtt.PropReceiveMaximum) && int(pp.ReceiveMaximum) < c.sendQuota {
		c.sendQuota = int(pp.ReceiveMaximum) // [MQTT-3.3.4-7]
	}
	if pp.Has(mqtt.PropMaximumPacketSize) {
		c.maxOut = pp.MaximumPacketSize // [MQTT-3.1.2-24]
	}
	c.aliasMax = pp.TopicAliasMaximum // [MQTT-3.1.2-26]
	// Request Problem Information 0 forbids reason strings and user properties on packets
	// other than PUBLISH, CONNACK and DISCONNECT [MQTT-3.1.2-29]; the broker sends them on
	// none of those others, so there is nothing to switch off.
	c.sessExpiry = c.srv.capExpiry(pp.SessionExpiry)
	if pp.Has(mqtt.PropSessionExpiry) && cfg.MaxSessionExpiry > 0 && pp.SessionExpiry > cfg.MaxSessionExpiry {
		ack.Properties.SessionExpiry = cfg.MaxSessionExpiry
		ack.Properties.Set(mqtt.PropSessionExpiry)
	}
	if assigned {
		ack.Properties.AssignedClientID = c.id // [MQTT-3.2.2-16]
		ack.Properties.Set(mqtt.PropAssignedClientID)
	}
	ack.Properties.ReceiveMaximum = cfg.ReceiveMaximum
	ack.Properties.Set(mqtt.PropReceiveMaximum)
	ack.Properties.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	ack.Properties.Set(mqtt.PropMaximumPacketSize)
	if cfg.TopicAliasMaximum > 0 {
		ack.Properties.TopicAliasMaximum = cfg.TopicAliasMaximum
		ack.Properties.Set(mqtt.PropTopicAliasMaximum)
	}
}

// attach finds or makes the session for c.id, taking it over from an older connection
// [MQTT-3.1.4-2], sets ack.SessionPresent [MQTT-3.2.2-2..3], and writes the CONNACK followed by
// what the session holds [MQTT-3.2.0-1]. The new connection owns the session from the moment it
// is attached, under the server lock, so two CONNECTs with one client id cannot both take it.
//
// Every CONNECT claims the client id in the store first: another replica holding it lets go, and
// a persistent session comes back from the store, wherever it was held before. A session the
// store cannot claim (Redis away) is refused: its messages could not be kept.
func (s *Server) attach(c *client, cleanStart bool, ack *mqtt.Connack) error {
	s.settle(c.id) // this replica's own last writes for the id first: the claim fences them
	sc, err := s.store.Claim(c.id, cleanStart, c.sessExpiry)
	if err != nil {
		return err
	}
	// A v5 CONNECT with Clean Start 0 and no session expiry resumes the stored session
	// [MQTT-3.1.2-4], which then ends with this connection [MQTT-3.1.2-11].
	persistent := c.sessExpiry != 0 || sc.Present
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errors.New("server shutting down")
	}
	prev := s.sessions[c.id]
	var old *client
	if prev != nil {
		old = prev.client.Load()
	}
	var sess *session
	present := false
	switch {
	case persistent:
		sess, present = s.restoreSessionLocked(c.id, prev, cleanStart, sc)
	case prev != nil && !cleanStart:
		// A v5 session with expiry 0 whose connection is still open, resumed [MQTT-3.1.2-4].
		sess, present = prev, true
		s.resumeOpenLocked(prev)
	default:
		if prev != nil {
			if will := s.dropSessionLocked(prev, true); will != nil {
				go s.publishWill(will) // its session ends [MQTT-3.1.3-9]
			}
		}
		sess = newSession(s, c.id)
	}
	s.bindLocked(c, sess, sc.Epoch, present, ack)
	s.mu.Unlock()
	s.presenceConnected(c, cleanStart, present)
	if persistent && present {
		sess.index() // the previous owner may have died before writing it
	}
	if old != nil {
		old.takenOver(cleanStart)
	}
	return nil
}

// restoreSessionLocked makes a persistent session again from its claim sc (the store's copy is
// the truth), taking over from prev, the session held here for the id, if any: its memory-path
// deliveries (shared subscriptions) stay, and so do the subscriptions of a clean session resumed
// as persistent. present tells whether a session was there. Called with s.mu held.
func (s *Server) restoreSessionLocked(id string, prev *session, cleanStart bool, sc bus.SessionClaim) (sess *session, present bool) {
	var carried []delivery // memory-path deliveries (shared subscriptions) stay
	var carriedSubs map[string]subOpts
	if prev != nil {
		prev.mu.Lock()
		if !cleanStart {
			for _, d := range prev.queue {
				if d.seq == 0 {
					carried = append(carried, d)
				}
			}
			if !prev.stored.Load() {
				carriedSubs = maps.Clone(prev.subs) // a clean session resumed as persistent
			}
		}
		prev.mu.Unlock()
		// The store belongs to this claim now.
		if will := s.dropSessionLocked(prev, true); cleanStart && will != nil {
			// The old session ends: its delayed will is due now [MQTT-3.1.3-9]. Resumed
			// within the delay, it is not sent.
			go s.publishWill(will)
		}
	}
	sess = newSession(s, id)
	s.restore(sess, sc)
	present = sc.Present || carriedSubs != nil
	for f, o := range carriedSubs {
		_, _, _ = s.subscribe(sess, f, o)
	}
	sess.mu.Lock()
	for _, d := range carried {
		sess.enqueueLocked(d)
	}
	sess.mu.Unlock()
	return sess, present
}

// resumeOpenLocked readies a session that is resumed as a clean one: its QoS 1/2 messages come
// over the bus from now on, not through a log, and its expiry and will timers stop. Called with
// s.mu held.
func (s *Server) resumeOpenLocked(sess *session) {
	if sess.stored.Load() {
		sess.stored.Store(false)
		s.undurable(sess)
	}
	sess.mu.Lock()
	sess.stored.Store(false)
	if sess.expiryTimer != nil {
		sess.expiryTimer.Stop()
		sess.expiryTimer = nil
	}
	if sess.willTimer != nil {
		sess.willTimer.Stop()
		sess.willTimer = nil
		sess.will = nil
	}
	sess.mu.Unlock()
}

// bindLocked makes sess the session of c: it enters the session table, a resumed one's
// subscriptions are checked against the ACL again, and the CONNACK goes out followed by what the
// session holds. Called with s.mu held.
func (s *Server) bindLocked(c *client, sess *session, epoch uint64, present bool, ack *mqtt.Connack) {
	s.sessions[c.id] = sess
	sess.epoch = epoch
	c.sess = sess
	sess.username = c.username
	sess.expiry = c.sessExpiry
	if present && s.auth != nil {
		// The ACL may have changed, or another user may resume this client id: subscriptions are
		// checked again; queued messages are checked when they are sent.
		for f := range sess.subscriptions() {
			if !s.allowed(c.id, c.username, f, auth.Subscribe) {
				s.unsubscribe(sess, f)
			}
		}
	}
	sess.mu.Lock()
	ack.SessionPresent = present
	c.writePacket(ack)
	// From here the old connection's teardown sees that it no longer owns the session.
	sess.client.Store(c)
	sess.saveStateLocked()
	sess.resumeLocked(c, time.Now())
	sess.mu.Unlock()
	s.stats.connects.Add(1)
	s.stats.clients.Add(1)
}

// takenOver closes a connection whose client id connected again. The old will is published unless
// the new connection resumes the session and the will has a delay [MQTT-3.1.4-3].
func (c *client) takenOver(newCleanStart bool) {
	c.setReason(discTakeover)
	c.event(c.srv.log.Debug()).Msg("session taken over")
	c.takeover.Store(true)
	if !newCleanStart && c.willDelay > 0 {
		c.takeoverKeepsWill.Store(true)
	}
	c.sendDisconnect(mqtt.SessionTakenOver)
	<-c.done
}

// shutdown ends one connection during a server stop: v5 clients hear DISCONNECT 0x8B first.
func (c *client) shutdown(ctx context.Context) {
	if c.sess == nil || c.closed.Load() {
		c.closeConn()
		return
	}
	c.setReason(discShutdown)
	c.sendDisconnect(mqtt.ServerShuttingDown)
}

// enableTCPKeepAlive turns on TCP keep-alive (Go's defaults: probes after 15 s idle, every 15 s,
// 9 of them) for a connection whose client asked for no MQTT keep alive, so that a peer that
// vanished without a FIN is still found. The listeners leave it off (app.listen): the MQTT keep
// alive does that job for every other client, and the socket options cost each connect.
func enableTCPKeepAlive(conn net.Conn) {
	for conn != nil {
		switch x := conn.(type) {
		case interface {
			SetKeepAliveConfig(net.KeepAliveConfig) error
		}: // *net.TCPConn, and sockio.Conn embedding one
			_ = x.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
			return
		case interface{ NetConn() net.Conn }: // TLS
			conn = x.NetConn()
		default:
			return // WebSocket: its listener keeps Go's TCP keep-alive
		}
	}
}
