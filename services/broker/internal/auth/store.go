package auth

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Store holds the broker's password file and ACL and reloads them together. It is safe for
// concurrent use: checks read one immutable snapshot through an atomic pointer, and Reload swaps
// in a new snapshot only when both files parse.
//
// Authentication rules (Authenticate):
//   - With a password file, a client that presents a user name must present that user's password;
//     an unknown user or a wrong or missing password is refused, whatever allowAnonymous says. A
//     client without a user name is accepted only if allowAnonymous. This is mosquitto's rule.
//   - Without a password file and with allowAnonymous, every client is accepted; a user name it
//     presents is only a claim (its password is not checked), so an ACL keyed on user names means
//     little without a password file.
//   - Without a password file and without allowAnonymous there is no way to authenticate: every
//     client is refused, as mosquitto 2.0 does (RefusesEveryone). Clients authenticated by a TLS
//     client certificate (the broker's CN-as-user-name mode) never reach Authenticate.
//
// Authorization (Allowed): the health gateway's probe topics ($mcloudtt/probe/...) are reserved
// for one user, the probe user (WithProbeUser): it may publish, subscribe and receive there, and
// nobody else may, whatever the ACL file says; without a probe user nobody may. Everything else
// follows the ACL file, and without one every client may do everything.
type Store struct {
	passwordFile, aclFile string
	allowAnonymous        bool
	probeUser             string
	tokens                bool // JWT authentication is on (WithTokens)

	reloadMu sync.Mutex // serialises Reload so the last one to start is the one in force
	cur      atomic.Pointer[storeState]
}

type storeState struct {
	passwords *Passwords // nil: no password file
	acl       *ACL       // nil: no ACL file
}

// StoreOption adjusts a Store.
type StoreOption func(*Store)

// WithProbeUser names the user that owns the probe topics (see Store); "" leaves them to nobody.
func WithProbeUser(username string) StoreOption { return func(s *Store) { s.probeUser = username } }

// WithTokens says that clients may also authenticate with a JWT (JWT), so that a store without a
// password file and without anonymous access does not refuse everyone.
func WithTokens() StoreOption { return func(s *Store) { s.tokens = true } }

// NewStore loads the files; an empty path turns that feature off. Errors name the file, and the
// line for a malformed one (ParseError).
func NewStore(passwordFile, aclFile string, allowAnonymous bool, opts ...StoreOption) (*Store, error) {
	s := &Store{passwordFile: passwordFile, aclFile: aclFile, allowAnonymous: allowAnonymous}
	for _, o := range opts {
		o(s)
	}
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	return s, nil
}

func (s *Store) load() (*storeState, error) {
	var st storeState
	var pwErr, aclErr error
	if s.passwordFile != "" {
		st.passwords, pwErr = LoadPasswords(s.passwordFile)
		if pwErr != nil {
			pwErr = fmt.Errorf("password file: %w", pwErr)
		}
	}
	if s.aclFile != "" {
		st.acl, aclErr = LoadACL(s.aclFile)
		if aclErr != nil {
			aclErr = fmt.Errorf("acl file: %w", aclErr)
		}
	}
	if err := errors.Join(pwErr, aclErr); err != nil {
		return nil, err
	}
	return &st, nil
}

// Reload re-reads both files and, if both parse, replaces the configuration in one step. On error
// the previous configuration stays in force and the error is returned for the caller to log.
// Checks already running finish against the configuration they started with.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	s.cur.Store(st)
	return nil
}

// Authenticate decides a CONNECT: hasUsername says whether the client sent a user name (it may be
// empty), password is what it sent (nil or empty if none). See Store for the rules.
func (s *Store) Authenticate(username string, password []byte, hasUsername bool) bool {
	pw := s.cur.Load().passwords
	if !hasUsername || pw == nil {
		return s.allowAnonymous
	}
	return pw.Check(username, password)
}

// RefusesEveryone reports whether no client can authenticate: anonymous access is off and there
// is no password file and no JWT authentication.
func (s *Store) RefusesEveryone() bool { return !s.allowAnonymous && s.passwordFile == "" && !s.tokens }

// HasUser reports whether the password file has username (false without a password file): such
// a user authenticates with the password file, whatever the password looks like.
func (s *Store) HasUser(username string) bool {
	pw := s.cur.Load().passwords
	return pw != nil && pw.Has(username)
}

// ProbeUser returns the user that owns the probe topics ("" for nobody).
func (s *Store) ProbeUser() string { return s.probeUser }

// Allowed reports whether the client may perform access on topic; see ACL.Allowed. username ""
// means no user name. The probe topics are decided here (see Store); everything else by the ACL
// file, always true without one.
func (s *Store) Allowed(clientID, username, topic string, access Access) bool {
	switch probeScope(topic, access) {
	case probeInside:
		return s.probeUser != "" && username == s.probeUser
	case probeOverlaps:
		if username != s.probeUser || s.probeUser == "" {
			return false
		}
	}
	acl := s.cur.Load().acl
	if acl == nil {
		return true
	}
	return acl.Allowed(clientID, username, topic, access)
}
