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
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "Error: "+format+"\n", a...)
		return 1
	}
	var create, batch, del, iterSet bool
	kind, iterations := PBKDF2, DefaultIterations
	i := 0
flags:
	for ; i < len(args); i++ {
		switch args[i] {
		case "-c":
			create = true
		case "-b":
			batch = true
		case "-D":
			del = true
		case "-H", "-I":
			if i+1 == len(args) {
				return fail("%s needs an argument", args[i])
			}
			i++
			if args[i-1] == "-H" {
				k, err := ParseHashKind(args[i])
				if err != nil {
					return fail("unknown hash %q (want sha512-pbkdf2, bcrypt or sha512)", args[i])
				}
				kind = k
				continue
			}
			n, err := strconv.Atoi(args[i])
			if err != nil || n < 1 || n > maxIter {
				return fail("-I: iterations must be a number from 1 to %d", maxIter)
			}
			iterations, iterSet = n, true
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, passwdUsage)
			return 0
		case "--":
			i++
			break flags
		default:
			if strings.HasPrefix(args[i], "-") && len(args[i]) > 1 {
				fmt.Fprint(stderr, passwdUsage)
				return fail("unknown option %s", args[i])
			}
			break flags
		}
	}
	pos := args[i:]
	switch {
	case create && del:
		return fail("-c and -D cannot be used together")
	case batch && del:
		return fail("-b and -D cannot be used together")
	case iterSet && kind != PBKDF2:
		return fail("-I only applies to -H sha512-pbkdf2")
	}
	want := 2
	if batch {
		want = 3
	}
	if len(pos) != want {
		fmt.Fprint(stderr, passwdUsage)
		return 1
	}
	path, user := pos[0], pos[1]
	if reason := validUsername(user); reason != "" {
		return fail("%s", reason)
	}

	var newLine string
	if !del {
		var password string
		if batch {
			password = pos[2]
		} else {
			var err error
			if password, err = readPassword(stdin, stdout); err != nil {
				return fail("%v", err)
			}
		}
		if password == "" {
			return fail("empty password")
		}
		if len(password) > 65535 {
			return fail("password must be at most 65535 bytes")
		}
		hash, err := HashPassword(password, kind, WithIterations(iterations))
		if err != nil {
			return fail("%v", err)
		}
		newLine = hashLine(user, hash)
	}

	// Write through a symbolic link to its target, as mosquitto_passwd does with realpath.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	var old []byte
	if !create {
		var err error
		if old, err = os.ReadFile(path); err != nil {
			return fail("unable to open password file: %v (use -c to create it)", err)
		}
	}
	content, found, err := editPasswordFile(old, path, user, newLine)
	if err != nil {
		return fail("%v", err)
	}
	if del && !found {
		return fail("user %s not found in password file %s", user, path)
	}
	if err := writeFileAtomic(path, content); err != nil {
		return fail("%v", err)
	}
	return 0
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
