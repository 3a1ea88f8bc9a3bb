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
//   - Without a password file, a client is accepted if allowAnonymous is true or if it presents a
//     user name; its password is not checked. (mosquitto 2.0 refuses every client in that case
//     when allow_anonymous is false.) The user name is then only a claim, so an ACL keyed on user
//     names means little without a password file.
//
// Without an ACL file, every client may do everything (Allowed is always true).
type Store struct {
	passwordFile, aclFile string
	allowAnonymous        bool

	reloadMu sync.Mutex // serialises Reload so the last one to start is the one in force
	cur      atomic.Pointer[storeState]
}

type storeState struct {
	passwords *Passwords // nil: no password file
	acl       *ACL       // nil: no ACL file
}

// NewStore loads the files; an empty path turns that feature off. Errors name the file, and the
// line for a malformed one (ParseError).
func NewStore(passwordFile, aclFile string, allowAnonymous bool) (*Store, error) {
	s := &Store{passwordFile: passwordFile, aclFile: aclFile, allowAnonymous: allowAnonymous}
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
	if !hasUsername {
		return s.allowAnonymous
	}
	if pw == nil {
		return true
	}
	return pw.Check(username, password)
}

// Allowed reports whether the client may perform access on topic; see ACL.Allowed. username ""
// means no user name. Always true without an ACL file.
func (s *Store) Allowed(clientID, username, topic string, access Access) bool {
	acl := s.cur.Load().acl
	if acl == nil {
		return true
	}
	return acl.Allowed(clientID, username, topic, access)
}
