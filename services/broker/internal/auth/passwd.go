package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/term"
)

const passwdUsage = `usage: broker passwd [-c | -D] [-H sha512-pbkdf2|bcrypt|sha512] [-I iterations] passwordfile username
       broker passwd [-c] -b [-H sha512-pbkdf2|bcrypt|sha512] [-I iterations] passwordfile username password

Adds or updates a user in a mosquitto-format password file, as mosquitto_passwd does.
  -b  take the password from the command line (batch mode); otherwise it is read twice from
      standard input, without echo on a terminal
  -c  create the file, overwriting any existing one
  -D  delete the user
  -H  hash: sha512-pbkdf2 (default, what mosquitto 2.x writes), bcrypt (cost 10; mosquitto
      cannot read it) or sha512 (mosquitto 1.x; weak)
  -I  PBKDF2 iterations (default 101, as mosquitto_passwd)
The file is replaced atomically with mode 0600; other users, comments and blank lines are kept.
`

// RunPasswd is the `broker passwd` subcommand; args excludes "passwd". It returns the process exit
// status: 0 on success, 1 on any error (mosquitto_passwd's convention), with the reason on stderr.
//
// Unlike mosquitto_passwd, which rewrites the file in place after making a backup, the file is
// replaced by rename, so a reader (the broker reloading) sees the old or the new file, never half
// of one. Comment lines survive (mosquitto_passwd 2.0 calls them corrupt), and a file that does
// not parse is refused rather than rewritten, except for the lines of the user being changed.
func RunPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd, err := parsePasswdArgs(args)
	var usage *passwdUsageError
	switch {
	case errors.Is(err, errPasswdHelp):
		fmt.Fprint(stdout, passwdUsage)
		return 0
	case errors.As(err, &usage):
		fmt.Fprint(stderr, passwdUsage)
		if usage.msg != "" {
			fmt.Fprintf(stderr, "Error: %s\n", usage.msg)
		}
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if err := cmd.run(stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

// passwdCmd is one `broker passwd` invocation, as parsed from its arguments.
type passwdCmd struct {
	create, batch, del bool
	kind               HashKind
	iterations         int
	iterSet            bool   // -I was given
	path, user         string // the password file and the user to add, update or delete
	password           string // from the command line with -b
}

// errPasswdHelp is parsePasswdArgs' answer to -h: print the usage to stdout, exit 0.
var errPasswdHelp = errors.New("help requested")

// passwdUsageError is an error after which the usage goes to stderr, followed by msg
// as an error line when msg is not empty.
type passwdUsageError struct{ msg string }

func (e *passwdUsageError) Error() string { return e.msg }

// parsePasswdArgs parses the options and operands of `broker passwd` and checks their
// combinations and the user name.
func parsePasswdArgs(args []string) (*passwdCmd, error) {
	cmd := &passwdCmd{kind: PBKDF2, iterations: DefaultIterations}
	pos, err := cmd.parseFlags(args)
	if err != nil {
		return nil, err
	}
	switch {
	case cmd.create && cmd.del:
		return nil, errors.New("-c and -D cannot be used together")
	case cmd.batch && cmd.del:
		return nil, errors.New("-b and -D cannot be used together")
	case cmd.iterSet && cmd.kind != PBKDF2:
		return nil, errors.New("-I only applies to -H sha512-pbkdf2")
	}
	want := 2
	if cmd.batch {
		want = 3
	}
	if len(pos) != want {
		return nil, &passwdUsageError{}
	}
	cmd.path, cmd.user = pos[0], pos[1]
	if cmd.batch {
		cmd.password = pos[2]
	}
	if reason := validUsername(cmd.user); reason != "" {
		return nil, errors.New(reason)
	}
	return cmd, nil
}

// parseFlags reads the options at the start of args into cmd and returns the operands
// after them.
func (cmd *passwdCmd) parseFlags(args []string) ([]string, error) {
	i := 0
flags:
	for ; i < len(args); i++ {
		switch args[i] {
		case "-c":
			cmd.create = true
		case "-b":
			cmd.batch = true
		case "-D":
			cmd.del = true
		case "-H", "-I":
			if i+1 == len(args) {
				return nil, fmt.Errorf("%s needs an argument", args[i])
			}
			i++
			if err := cmd.setValue(args[i-1], args[i]); err != nil {
				return nil, err
			}
		case "-h", "-help", "--help":
			return nil, errPasswdHelp
		case "--":
			i++
			break flags
		default:
			if strings.HasPrefix(args[i], "-") && len(args[i]) > 1 {
				return nil, &passwdUsageError{msg: "unknown option " + args[i]}
			}
			break flags
		}
	}
	return args[i:], nil
}

// setValue applies option -H or -I with its argument v.
func (cmd *passwdCmd) setValue(opt, v string) error {
	if opt == "-H" {
		k, err := ParseHashKind(v)
		if err != nil {
			return fmt.Errorf("unknown hash %q (want sha512-pbkdf2, bcrypt or sha512)", v)
		}
		cmd.kind = k
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxIter {
		return fmt.Errorf("-I: iterations must be a number from 1 to %d", maxIter)
	}
	cmd.iterations, cmd.iterSet = n, true
	return nil
}

// run carries out a parsed command: it hashes the new password (unless deleting) and
// rewrites the password file.
func (cmd *passwdCmd) run(stdin io.Reader, stdout io.Writer) error {
	var newLine string
	if !cmd.del {
		var err error
		if newLine, err = cmd.newLine(stdin, stdout); err != nil {
			return err
		}
	}
	return cmd.rewrite(newLine)
}

// newLine returns the user's password file line, with the password from the command
// line or read from stdin.
func (cmd *passwdCmd) newLine(stdin io.Reader, stdout io.Writer) (string, error) {
	password := cmd.password
	if !cmd.batch {
		var err error
		if password, err = readPassword(stdin, stdout); err != nil {
			return "", err
		}
	}
	if password == "" {
		return "", errors.New("empty password")
	}
	if len(password) > 65535 {
		return "", errors.New("password must be at most 65535 bytes")
	}
	hash, err := HashPassword(password, cmd.kind, WithIterations(cmd.iterations))
	if err != nil {
		return "", err
	}
	return hashLine(cmd.user, hash), nil
}

// rewrite replaces the user's line of the password file by newLine, or removes it
// when newLine is "", and writes the file back atomically.
func (cmd *passwdCmd) rewrite(newLine string) error {
	path := cmd.path
	// Write through a symbolic link to its target, as mosquitto_passwd does with realpath.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	var old []byte
	if !cmd.create {
		var err error
		if old, err = os.ReadFile(path); err != nil {
			return fmt.Errorf("unable to open password file: %v (use -c to create it)", err)
		}
	}
	content, found, err := editPasswordFile(old, path, cmd.user, newLine)
	if err != nil {
		return err
	}
	if cmd.del && !found {
		return fmt.Errorf("user %s not found in password file %s", cmd.user, path)
	}
	return writeFileAtomic(path, content)
}

// readPassword reads the password twice. On a terminal it does not echo; otherwise it reads two
// lines, so scripts can pipe the password in.
func readPassword(stdin io.Reader, prompt io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		read := func(p string) (string, error) {
			fmt.Fprint(prompt, p)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(prompt)
			return string(b), err
		}
		p1, err := read("Password: ")
		if err != nil {
			return "", fmt.Errorf("reading password: %w", err)
		}
		p2, err := read("Reenter password: ")
		if err != nil {
			return "", fmt.Errorf("reading password: %w", err)
		}
		if p1 != p2 {
			return "", errors.New("passwords do not match")
		}
		return p1, nil
	}
	br := bufio.NewReader(stdin)
	readLine := func() (string, error) {
		s, err := br.ReadString('\n')
		if err == io.EOF && s != "" {
			err = nil
		}
		if err != nil {
			return "", err
		}
		s = strings.TrimSuffix(s, "\n")
		return strings.TrimSuffix(s, "\r"), nil
	}
	p1, err := readLine()
	if err != nil {
		return "", fmt.Errorf("reading password from standard input: %w", err)
	}
	p2, err := readLine()
	if err != nil {
		return "", fmt.Errorf("reading the password a second time from standard input: %w", err)
	}
	if p1 != p2 {
		return "", errors.New("passwords do not match")
	}
	return p1, nil
}

// editPasswordFile returns old with user's line replaced by newLine (removed if newLine is ""; or
// appended if user has no line) and whether user had a line. Every other line is kept as it is,
// but a line that would make the broker refuse the file is an error, naming the line.
func editPasswordFile(old []byte, name, user, newLine string) ([]byte, bool, error) {
	var out bytes.Buffer
	found := false
	seen := make(map[string]int)
	err := eachLine(bytes.NewReader(old), name, func(n int, line string) error {
		u, hash, ok, reason := splitPasswordLine(line)
		if ok && u == user {
			if !found && newLine != "" {
				out.WriteString(newLine)
			}
			found = true // later duplicates of user are dropped
			return nil
		}
		if ok {
			if reason == "" {
				if _, err := parseHash(hash); err != nil {
					reason = fmt.Sprintf("user %q: %v", u, err)
				} else if prev, dup := seen[u]; dup {
					reason = fmt.Sprintf("duplicate user %q (first on line %d)", u, prev)
				}
			}
			if reason != "" {
				return &ParseError{File: name, Line: n, Reason: reason + "; fix or remove this line first"}
			}
			seen[u] = n
		}
		out.WriteString(line)
		out.WriteByte('\n')
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if !found && newLine != "" {
		out.WriteString(newLine)
	}
	return out.Bytes(), found, nil
}

// writeFileAtomic replaces path with content: a temporary file in the same directory, mode 0600,
// synced, then renamed over path. An existing file's owner and group are kept when we may (root
// editing the file of a broker that runs as another user must not lock it out).
func writeFileAtomic(path string, content []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("setting mode of %s: %w", tmp.Name(), err)
	}
	if fi, statErr := os.Stat(path); statErr == nil {
		keepOwner(tmp, fi)
	} else if !errors.Is(statErr, fs.ErrNotExist) {
		return statErr
	}
	if _, err = tmp.Write(content); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	// Make the rename durable; failing here leaves a correct file, so it is not an error.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
