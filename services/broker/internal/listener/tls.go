package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/sockio"
)

// TLSOptions says where the server's certificate and key are and how clients are verified.
type TLSOptions struct {
	// CertFile is the PEM certificate chain, leaf first. Required.
	CertFile string
	// KeyFile is the PEM private key of CertFile's leaf. Required.
	KeyFile string
	// ClientCAFile, when set, is a PEM bundle of the CAs that client certificates are verified
	// against. Empty (the default): clients are not asked for a certificate.
	ClientCAFile string
	// RequireClientCert refuses clients without a certificate that verifies against ClientCAFile
	// (tls.RequireAndVerifyClientCert). Default false: a certificate is optional, but verified
	// when given (tls.VerifyClientCertIfGiven). It needs ClientCAFile.
	RequireClientCert bool
	// TicketKeyFile, when set, holds the session ticket keys shared by the replicas
	// (tickets.go). Empty: Go's own keys, per process.
	TicketKeyFile string
}

// DefaultWatchInterval is Watch's polling interval when it is given none.
const DefaultWatchInterval = 10 * time.Second

// Certs holds the current server certificate and client CA pool, read from TLSOptions' files,
// and hands them to each new TLS handshake, so Reload takes effect for new connections without a
// restart; established connections keep what they shook hands with. Safe for concurrent use.
type Certs struct {
	opts TLSOptions
	cur  atomic.Pointer[certState]

	// mu serializes reloads and guards everything that follows.
	mu sync.Mutex
	// seen is how the files looked just before the last load attempt, successful or not, so
	// Watch retries a failed reload only once the files change again instead of every tick.
	seen []os.FileInfo
}

// certState is one consistent generation of files; it is never modified once stored.
type certState struct {
	cert       *tls.Certificate
	clientCAs  *x509.CertPool // nil without ClientCAFile
	ticketKeys [][32]byte     // nil without TicketKeyFile
}

// LoadCerts reads the files named in o. Its errors name the file at fault.
func LoadCerts(o TLSOptions) (*Certs, error) {
	switch {
	case o.CertFile == "":
		return nil, errors.New("listener: TLS CertFile is empty")
	case o.KeyFile == "":
		return nil, errors.New("listener: TLS KeyFile is empty")
	case o.RequireClientCert && o.ClientCAFile == "":
		return nil, errors.New("listener: TLS RequireClientCert needs ClientCAFile")
	}
	c := &Certs{opts: o}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again. On error the certificate and CA pool in use stay as they were.
func (c *Certs) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(c.statFiles())
}

func (c *Certs) reloadLocked(seen []os.FileInfo) error {
	c.seen = seen
	st, err := loadCertState(c.opts)
	if err != nil {
		return err
	}
	c.cur.Store(st)
	return nil
}

func loadCertState(o TLSOptions) (*certState, error) {
	certPEM, err := os.ReadFile(o.CertFile)
	if err != nil {
		return nil, fmt.Errorf("listener: TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("listener: TLS key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("listener: TLS certificate %s with key %s: %w", o.CertFile, o.KeyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("listener: TLS certificate %s: %w", o.CertFile, err)
		}
	}
	st := &certState{cert: &cert}
	if o.ClientCAFile != "" {
		caPEM, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("listener: TLS client CA: %w", err)
		}
		st.clientCAs = x509.NewCertPool()
		if !st.clientCAs.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("listener: TLS client CA %s: no PEM certificate found", o.ClientCAFile)
		}
	}
	if o.TicketKeyFile != "" {
		if st.ticketKeys, err = loadTicketKeys(o.TicketKeyFile); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Leaf is the certificate now served, for logging its serial number and expiry after a reload.
func (c *Certs) Leaf() *x509.Certificate { return c.cur.Load().cert.Leaf }

// Watch polls the files every interval (DefaultWatchInterval if interval <= 0) and reloads them
// when one's modification time, size or identity changed, until ctx ends. It blocks: run it in
// its own goroutine. onReload, if not nil, is called after each reload with its result.
//
// Files are looked up by path each time, never through a kept descriptor, so every way of
// replacing them is seen: rewriting in place, renaming a new file over the old one, and the
// Kubernetes Secret volume's atomic swap of the ..data symlink that the file names point through.
// A reload that fails (say the new certificate was renamed into place before its key) keeps the
// old certificate, is reported once, and is tried again when the files next change.
func (c *Certs) Watch(ctx context.Context, interval time.Duration, onReload func(error)) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if changed, err := c.reloadIfChanged(); changed && onReload != nil {
			onReload(err)
		}
	}
}

func (c *Certs) reloadIfChanged() (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.statFiles()
	if sameFiles(now, c.seen) {
		return false, nil
	}
	return true, c.reloadLocked(now)
}

// statFiles stats each file by path (following symlinks); a missing file is a nil entry.
func (c *Certs) statFiles() []os.FileInfo {
	paths := []string{c.opts.CertFile, c.opts.KeyFile, c.opts.ClientCAFile, c.opts.TicketKeyFile}
	out := make([]os.FileInfo, len(paths))
	for i, p := range paths {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			out[i] = fi
		}
	}
	return out
}

// sameFiles reports whether two stat snapshots show the same files unchanged. The identity check
// (device and inode) catches a replacement with equal size written within the file system's
// timestamp granularity, which mtime and size alone would miss.
func sameFiles(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x == nil || y == nil {
			if x != y {
				return false
			}
			continue
		}
		if !os.SameFile(x, y) || !x.ModTime().Equal(y.ModTime()) || x.Size() != y.Size() {
			return false
		}
	}
	return true
}

func (c *Certs) clientAuth() tls.ClientAuthType {
	switch {
	case c.opts.ClientCAFile == "":
		return tls.NoClientCert
	case c.opts.RequireClientCert:
		return tls.RequireAndVerifyClientCert
	default:
		return tls.VerifyClientCertIfGiven
	}
}

// Config returns a server tls.Config (TLS 1.2 at least) whose GetConfigForClient hands every
// handshake the certificate and client CA pool current at that moment. Use it as it is: a copy
// that drops GetConfigForClient would fall back to GetCertificate (still current) and to a
// snapshot of the client CA pool taken now.
func (c *Certs) Config() *tls.Config { return c.config(nil) }

// config is Config with the given ALPN protocols (wss needs "http/1.1"; plain MQTT over TLS
// offers none, so clients that send ALPN are not refused for a protocol name mismatch).
func (c *Certs) config(nextProtos []string) *tls.Config {
	auth := c.clientAuth()
	// One handshake configuration per certificate generation, shared by every connection of it:
	// a tls.Conn keeps the configuration it was served with, and a fresh one per connection
	// cost every idle TLS connection a few hundred bytes.
	var cached atomic.Pointer[configFor]
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		ClientAuth: auth,
		ClientCAs:  c.cur.Load().clientCAs,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load().cert, nil
		},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			st := c.cur.Load()
			if cf := cached.Load(); cf != nil && cf.state == st {
				return cf.config, nil
			}
			// Without shared ticket keys the outer config's (rotated, per process) keys are used.
			cf := &configFor{state: st, config: &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{*st.cert},
				ClientAuth:   auth,
				ClientCAs:    st.clientCAs,
			}}
			if st.ticketKeys != nil {
				cf.config.SetSessionTicketKeys(st.ticketKeys)
			}
			cached.Store(cf)
			return cf.config, nil
		},
	}
}

// configFor is the handshake configuration made for one certificate generation.
type configFor struct {
	state  *certState
	config *tls.Config
}

// TLS wraps ln so that its connections speak TLS with c's current certificate. Accept returns a
// *tls.Conn at once; the handshake runs on the connection's first Read or Write, in the caller's
// per-connection goroutine, so a slow or silent client never holds up Accept. The broker sets its
// CONNECT read deadline before the first Read, and that deadline bounds the handshake too.
//
// Under each *tls.Conn is the TCP connection wrapped by sockio.Wrap, so the broker can ask
// whether a whole record has arrived without parking a goroutine (sockio.Conn.SetNoWait).
func TLS(ln net.Listener, c *Certs) net.Listener {
	return &tlsListener{Listener: ln, config: c.Config()}
}

type tlsListener struct {
	net.Listener
	config *tls.Config
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(sockio.Wrap(c), l.config), nil
}

// UnwrapTLS finds the *tls.Conn under c: c itself, or the connection under a WebSocket
// connection accepted by a wss:// listener (anything with a NetConn() net.Conn method is looked
// through). Use it to inspect the TLS state, not to read or write.
func UnwrapTLS(c net.Conn) (*tls.Conn, bool) {
	for c != nil {
		switch x := c.(type) {
		case *tls.Conn:
			return x, true
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil, false
		}
	}
	return nil, false
}

// PeerCommonName returns the Subject CommonName of the client certificate that was verified
// against TLSOptions.ClientCAFile on c, a TLS or wss:// connection. If the handshake has not run
// yet it runs it now, bounded by c's deadlines (the broker's CONNECT read deadline, for one). It
// reports false for a connection without TLS, a failed handshake, a client that sent no
// certificate, and a certificate with an empty CommonName.
func PeerCommonName(c net.Conn) (string, bool) {
	tc, ok := UnwrapTLS(c)
	if !ok {
		return "", false
	}
	if !tc.ConnectionState().HandshakeComplete {
		if err := tc.HandshakeContext(context.Background()); err != nil {
			return "", false
		}
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := st.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}
