package load

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
)

// Config is one run's configuration, read from the command line by parseFlags. The
// flag names and defaults follow ../shared/mqttload where it has the same flag, so the
// S1–S5 command lines run unchanged.
type Config struct {
	Addr           string        // -addr: broker or redis-server host:port
	SubAddr        string        // -sub-addr: where subscribers connect (another cluster replica); default Addr
	SubPersist     bool          // -sub-persistent: subscribers have persistent sessions (clean session 0, v5 expiry 3600)
	TLS            bool          // -tls: MQTT over TLS
	TLSCA          string        // -tls-ca: PEM CA file to verify the broker with (else not verified)
	TLSResume      bool          // -tls-resume: resume TLS sessions (tickets) from a shared client cache
	Src            string        // -src: local addresses to dial from, comma-separated, round-robin
	StormKill      int           // -storm-kill: the broker process to SIGKILL in storm mode
	ReconnectAddrs string        // -reconnect-addrs: where storm mode's clients reconnect, in turn
	Mode           string        // -mode: pubsub, conns or redis
	Topology       string        // -topology: fanin, fanout or pairwise
	Pubs           int           // -pubs: publishers
	Subs           int           // -subs: subscribers
	N              int           // -n: messages per publisher
	Size           int           // -size: payload bytes, at least payloadHeader
	QoS            int           // -qos: QoS of PUBLISH and SUBSCRIBE unless overridden
	PubQoS         int           // -pub-qos: QoS of PUBLISH (-1: -qos)
	SubQoS         int           // -sub-qos: QoS requested in SUBSCRIBE (-1: -qos)
	Inflight       int           // -inflight: unacknowledged QoS>0 PUBLISHes per publisher; redis: pipeline depth
	Rate           float64       // -rate: messages per second over all publishers; 0: unpaced
	Version        int           // -v: MQTT protocol level, 4 (3.1.1) or 5
	Timeout        time.Duration // -timeout: hard limit for the whole run
	Drain          time.Duration // -drain: after publishing, stop waiting once nothing arrived for this long
	Warmup         time.Duration // -warmup: pause between the last connection and the first PUBLISH
	KeepAlive      int           // -keepalive: seconds; PINGREQ every half of it; 0 disables
	Conns          int           // -conns: conns mode, idle connections to open
	DialPar        int           // -dial-par: concurrent connection attempts
	Settle         time.Duration // -settle: conns mode, wait after the last CONNACK before reading RSS
	ConnTimeout    time.Duration // -conn-timeout: limit for one dial + CONNECT/CONNACK (+ SUBACK)
	BrokerPID      int           // -broker-pid: broker process to read /proc for; 0 for none
	ResetPeak      bool          // -reset-peak: reset the broker's VmHWM at the start of the run
	Label          string        // -label: copied into the summary
	Topic          string        // -topic: topic / channel prefix
	Quiet          bool          // -q: print only the JSON summary
	MaxPacket      int           // -max-packet: largest packet accepted from the server
	// Redis is how redis mode reaches redis-server: AUTH and TLS, from the environment
	// (LOADGEN_REDIS_USERNAME, LOADGEN_REDIS_PASSWORD_FILE, LOADGEN_REDIS_TLS, ...), named as the
	// services' settings are.
	Redis redisconn.Env
}

// EnvPrefix is the prefix of redis mode's environment settings (LOADGEN_REDIS_TLS, ...).
const EnvPrefix = "LOADGEN"

const payloadHeader = 16

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:1883", "broker (or redis-server) address host:port")
	fs.StringVar(&c.SubAddr, "sub-addr", "", "subscribers connect here instead of -addr (another replica of a cluster)")
	fs.BoolVar(&c.SubPersist, "sub-persistent", false, "subscribers connect with a persistent session (3.1.1 clean session 0, 5.0 session expiry 3600 s); each run uses new client ids")
	fs.StringVar(&c.Mode, "mode", "pubsub", "pubsub | conns | storm | redis")
	fs.IntVar(&c.StormKill, "storm-kill", 0, "storm mode: pid of the broker behind -addr, sent SIGKILL after -settle")
	fs.StringVar(&c.ReconnectAddrs, "reconnect-addrs", "", "storm mode: comma-separated broker addresses the clients reconnect to, in turn")
	fs.BoolVar(&c.TLS, "tls", false, "MQTT over TLS (pubsub and conns modes)")
	fs.BoolVar(&c.TLSResume, "tls-resume", false, "with -tls: keep TLS session tickets in a client cache shared by all connections, so connections after the first resume (conns mode connects one first, untimed)")
	fs.StringVar(&c.Src, "src", "", "local addresses to dial from, comma-separated (e.g. 127.0.0.2,127.0.0.3), used in turn: each gives another ~28k ephemeral ports; empty: the kernel's choice")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "with -tls: PEM CA file to verify the broker's certificate; empty: not verified")
	fs.StringVar(&c.Topology, "topology", "fanin", "fanin|fanout: every publisher sends to one topic that every subscriber is on; pairwise: publisher i -> topic i -> subscriber i (needs -pubs == -subs)")
	fs.IntVar(&c.Pubs, "pubs", 1, "publishers")
	fs.IntVar(&c.Subs, "subs", 1, "subscribers")
	fs.IntVar(&c.N, "n", 1000, "messages per publisher")
	fs.IntVar(&c.Size, "size", 64, fmt.Sprintf("payload bytes (min %d: send time, publisher id, sequence)", payloadHeader))
	fs.IntVar(&c.QoS, "qos", 0, "QoS 0, 1 or 2 for both PUBLISH and SUBSCRIBE (see -pub-qos, -sub-qos)")
	fs.IntVar(&c.PubQoS, "pub-qos", -1, "QoS of PUBLISH; -1 = -qos")
	fs.IntVar(&c.SubQoS, "sub-qos", -1, "QoS requested in SUBSCRIBE; -1 = -qos")
	fs.IntVar(&c.Inflight, "inflight", 64, "unacknowledged QoS>0 PUBLISHes per publisher (v5: also capped by the server's Receive Maximum); redis: pipeline depth")
	fs.Float64Var(&c.Rate, "rate", 0, "messages/s in total, spread evenly over the publishers; 0 = as fast as possible (writes batched in 64 KiB)")
	fs.IntVar(&c.Version, "v", 4, "MQTT protocol level: 4 (3.1.1) or 5")
	fs.DurationVar(&c.Timeout, "timeout", 120*time.Second, "hard limit for the whole run")
	fs.DurationVar(&c.Drain, "drain", 5*time.Second, "after the publishers finish, stop waiting once no message arrived for this long")
	fs.DurationVar(&c.Warmup, "warmup", 200*time.Millisecond, "pause after connecting, before the first PUBLISH")
	fs.IntVar(&c.KeepAlive, "keepalive", 300, "MQTT keepalive seconds; every connection sends PINGREQ each keepalive/2; 0 = off")
	fs.IntVar(&c.Conns, "conns", 1000, "conns mode: idle connections to open")
	fs.IntVar(&c.DialPar, "dial-par", 32, "concurrent connection attempts")
	fs.DurationVar(&c.Settle, "settle", 5*time.Second, "conns mode: wait after the last CONNACK before reading the broker's RSS")
	fs.DurationVar(&c.ConnTimeout, "conn-timeout", 10*time.Second, "limit for one connection's dial and CONNECT/CONNACK (and SUBSCRIBE/SUBACK)")
	fs.IntVar(&c.BrokerPID, "broker-pid", 0, "broker PID: report its CPU seconds, VmRSS and VmHWM from /proc")
	fs.BoolVar(&c.ResetPeak, "reset-peak", true, "with -broker-pid: reset the broker's VmHWM at the start (writes /proc/PID/clear_refs), so the peak is this run's")
	fs.StringVar(&c.Label, "label", "", "free text copied into the summary")
	fs.StringVar(&c.Topic, "topic", "loadgen", "topic / channel prefix (a per-run id is appended)")
	fs.BoolVar(&c.Quiet, "q", false, "print only the JSON summary")
	fs.IntVar(&c.MaxPacket, "max-packet", 1<<20+1024, "largest packet accepted from the server, bytes")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.PubQoS < 0 {
		c.PubQoS = c.QoS
	}
	if c.SubQoS < 0 {
		c.SubQoS = c.QoS
	}
	if c.Mode == "redis" {
		var err error
		if c.Redis, err = redisconn.LoadEnv(EnvPrefix); err != nil {
			return c, err
		}
	}
	return c, c.validate()
}

// validate reports the first invalid setting by its flag name.
func (c *Config) validate() error {
	switch c.Mode {
	case "pubsub", "redis", "conns", "storm":
	default:
		return fmt.Errorf("-mode: %q is not pubsub, conns, storm or redis", c.Mode)
	}
	if c.Addr == "" {
		return errors.New("-addr: empty")
	}
	if _, err := parseSrc(c.Src); err != nil {
		return err
	}
	if c.TLSResume && !c.TLS {
		return errors.New("-tls-resume: needs -tls")
	}
	if _, err := c.tlsConfig(); err != nil {
		return err
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("-timeout: must be positive, got %s", c.Timeout)
	}
	if c.DialPar < 1 {
		return fmt.Errorf("-dial-par: must be at least 1, got %d", c.DialPar)
	}
	if c.ConnTimeout <= 0 {
		return fmt.Errorf("-conn-timeout: must be positive, got %s", c.ConnTimeout)
	}
	if c.KeepAlive < 0 || c.KeepAlive > 65535 {
		return fmt.Errorf("-keepalive: must be in [0, 65535], got %d", c.KeepAlive)
	}
	if c.Version != 4 && c.Version != 5 {
		return fmt.Errorf("-v: must be 4 (3.1.1) or 5, got %d", c.Version)
	}
	if c.Mode == "conns" || c.Mode == "storm" {
		return c.validateConns()
	}
	switch c.Topology {
	case "fanin", "fanout":
	case "pairwise":
		if c.Pubs != c.Subs {
			return fmt.Errorf("-topology pairwise: needs -pubs == -subs, got %d and %d", c.Pubs, c.Subs)
		}
	default:
		return fmt.Errorf("-topology: %q is not fanin, fanout or pairwise", c.Topology)
	}
	if c.Pubs < 1 || c.Subs < 1 {
		return fmt.Errorf("-pubs, -subs: must be at least 1, got %d and %d", c.Pubs, c.Subs)
	}
	if c.N < 1 || c.N > 1<<31 {
		return fmt.Errorf("-n: must be in [1, 2^31], got %d", c.N)
	}
	if c.Size < payloadHeader || c.Size > 1<<20 {
		return fmt.Errorf("-size: must be in [%d, 1 MiB], got %d", payloadHeader, c.Size)
	}
	if c.PubQoS < 0 || c.PubQoS > 2 {
		return fmt.Errorf("-pub-qos/-qos: must be 0, 1 or 2, got %d", c.PubQoS)
	}
	if c.SubQoS < 0 || c.SubQoS > 2 {
		return fmt.Errorf("-sub-qos/-qos: must be 0, 1 or 2, got %d", c.SubQoS)
	}
	if c.Inflight < 1 || c.Inflight > 65535 {
		return fmt.Errorf("-inflight: must be in [1, 65535], got %d", c.Inflight)
	}
	if c.Rate < 0 {
		return fmt.Errorf("-rate: must not be negative, got %g", c.Rate)
	}
	if c.Drain < 0 || c.Warmup < 0 {
		return errors.New("-drain, -warmup: must not be negative")
	}
	if c.MaxPacket < c.Size+1024 {
		return fmt.Errorf("-max-packet: must be at least -size + 1024, got %d", c.MaxPacket)
	}
	return nil
}

// tlsConfig is the client TLS configuration for -tls, or nil.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSResume {
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	if c.TLSCA == "" {
		conf.InsecureSkipVerify = true // a load test against a self-signed loopback broker
		return conf, nil
	}
	pem, err := os.ReadFile(c.TLSCA)
	if err != nil {
		return nil, fmt.Errorf("-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-tls-ca: no certificate in %s", c.TLSCA)
	}
	conf.RootCAs = pool
	if host, _, err := net.SplitHostPort(c.Addr); err == nil {
		conf.ServerName = host
	}
	return conf, nil
}

// validateConns checks the settings of conns and storm modes.
func (c *Config) validateConns() error {
	if c.Mode == "storm" {
		if c.StormKill <= 0 {
			return errors.New("-storm-kill: the pid of the broker to kill is required in storm mode")
		}
		if c.ReconnectAddrs == "" {
			return errors.New("-reconnect-addrs: required in storm mode")
		}
	}
	if c.Conns < 1 {
		return fmt.Errorf("-conns: must be at least 1, got %d", c.Conns)
	}
	if c.Settle < 0 {
		return fmt.Errorf("-settle: must not be negative, got %s", c.Settle)
	}
	return nil
}
