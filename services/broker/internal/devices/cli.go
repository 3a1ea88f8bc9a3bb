// Package devices is the `broker devices` subcommand: it manages the device registry of JWT
// authentication (package pkg/devices) from the command line, reaching Redis as the broker does.
package devices

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/mcloudtt/mcloudtt/pkg/devices"
	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

const devicesUsage = `usage: broker devices add [-expires TIME] DEVICE KEYFILE
       broker devices remove DEVICE KEYID|all
       broker devices list DEVICE

Manages the public keys a device signs its JWT passwords with, in the device registry in Redis
(every broker replica sees a change at the device's next CONNECT; nothing restarts).
  add     store the public key in KEYFILE ("-": standard input): a PEM PUBLIC KEY, RSA PUBLIC KEY
          or CERTIFICATE, RSA (2048 bits or more, RS256) or EC P-256 (ES256). A private key is
          refused. Adding a key the device has replaces its expiry.
          -expires  when the key stops being accepted: RFC 3339 (2027-01-31T00:00:00Z) or a
                    duration from now (720h); default never
  remove  delete one key by the id that add and list print, or every key of the device
  list    print the device's keys: id, format, added, expires, then the PEM with -pem
Redis is reached as the broker reaches it: BROKER_REDIS_ADDRS and BROKER_REDIS_USERNAME,
_PASSWORD, _PASSWORD_FILE, _TLS, _TLS_CA_FILE, _TLS_SERVER_NAME, _TLS_CERT_FILE, _TLS_KEY_FILE.
A device has at most BROKER_JWT_MAX_KEYS keys (default 3).
`

// cliEnv is what the subcommand reads from the broker's environment.
type cliEnv struct {
	RedisAddrs []string `envconfig:"REDIS_ADDRS"`
	redisconn.Env
	MaxKeys int `envconfig:"JWT_MAX_KEYS" default:"3"`
}

// RunDevices is the `broker devices` subcommand; args excludes "devices". It returns the exit
// status: 0 on success, 2 for a usage error, 1 for any other, with the reason on stderr.
func RunDevices(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, devicesUsage)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, devicesUsage)
		return 0
	}
	var env cliEnv
	if err := envconfig.Process("BROKER", &env); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if err := validateEnv(env); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, env, args, stdin, stdout)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprint(stderr, devicesUsage)
		fmt.Fprintf(stderr, "Error: %s\n", string(ue))
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

type usageError string

func (e usageError) Error() string { return string(e) }

func validateEnv(env cliEnv) error {
	switch {
	case len(env.RedisAddrs) == 0:
		return errors.New("BROKER_REDIS_ADDRS is not set: the device registry lives in the cluster's Redis")
	case env.MaxKeys < 1:
		return fmt.Errorf("BROKER_JWT_MAX_KEYS: must be at least 1, got %d", env.MaxKeys)
	}
	return env.Env.Validate("BROKER")
}

// run opens the registry and runs one command.
func run(ctx context.Context, env cliEnv, args []string, stdin io.Reader, stdout io.Writer) error {
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "add", "remove", "list":
	default:
		return usageError(fmt.Sprintf("unknown command %q", cmd))
	}
	rdb, err := devices.Dial(env.RedisAddrs, env.Env)
	if err != nil {
		return err
	}
	defer rdb.Close()
	reg := devices.New(rdb, wire.NewNames(""))
	switch cmd {
	case "add":
		return runAdd(ctx, reg, env.MaxKeys, rest, stdin, stdout)
	case "remove":
		return runRemove(ctx, reg, rest, stdout)
	}
	return runList(ctx, reg, rest, stdout)
}

func runAdd(ctx context.Context, reg *devices.Registry, maxKeys int, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("add", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	expiresFlag := fs.String("expires", "", "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
		return usageError("add wants [-expires TIME] DEVICE KEYFILE")
	}
	expires, err := parseExpiry(*expiresFlag, time.Now())
	if err != nil {
		return err
	}
	device, file := fs.Arg(0), fs.Arg(1)
	var data []byte
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return err
	}
	k, err := devices.ParseKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	updated, err := reg.Add(ctx, device, k, expires, maxKeys)
	if err != nil {
		return err
	}
	verb := "added"
	if updated {
		verb = "updated"
	}
	fmt.Fprintf(stdout, "%s %s key %s of device %s, expires %s\n", verb, k.Format, k.ID, device, when(expires))
	return nil
}

// parseExpiry reads -expires: RFC 3339 or a positive duration from now; "" is never.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, usageError(fmt.Sprintf("-expires %q: want RFC 3339 time or a positive duration", s))
	}
	return now.Add(d), nil
}

func runRemove(ctx context.Context, reg *devices.Registry, args []string, stdout io.Writer) error {
	if len(args) != 2 {
		return usageError("remove wants DEVICE KEYID|all")
	}
	n, err := reg.Remove(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("device %s has no key %s", args[0], args[1])
	}
	fmt.Fprintf(stdout, "removed %d key(s) of device %s\n", n, args[0])
	return nil
}

func runList(ctx context.Context, reg *devices.Registry, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	withPEM := fs.Bool("pem", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return usageError("list wants [-pem] DEVICE")
	}
	keys, err := reg.List(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	for _, k := range keys {
		fmt.Fprintf(stdout, "%s %s added %s expires %s\n", k.ID, k.Format, k.Added.UTC().Format(time.RFC3339), when(k.Expires))
		if *withPEM {
			fmt.Fprint(stdout, strings.TrimRight(k.PEM, "\n")+"\n")
		}
	}
	return nil
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
