package auth

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// passwd runs RunPasswd and returns its exit status and output.
func passwd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = RunPasswd(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustPasswd(t *testing.T, stdin string, args ...string) {
	t.Helper()
	if code, _, stderr := passwd(t, stdin, args...); code != 0 {
		t.Fatalf("passwd %q: exit %d: %s", args, code, stderr)
	}
}

func loadOK(t *testing.T, path string) *Passwords {
	t.Helper()
	p, err := LoadPasswords(path)
	if err != nil {
		t.Fatalf("the file passwd wrote does not load: %v", err)
	}
	return p
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPasswdCreateUpdateDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	mustPasswd(t, "", "-c", "-b", path, "alice", "a-pass")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if p := loadOK(t, path); p.Len() != 1 || !p.Check("alice", []byte("a-pass")) {
		t.Fatal("alice not added")
	}
	if !strings.HasPrefix(readString(t, path), "alice:$7$101$") {
		t.Errorf("default hash is not $7$ with 101 iterations: %q", readString(t, path))
	}

	// Comments and blank lines survive every edit; a file without a final newline is fine.
	os.WriteFile(path, []byte("# managed by hand\n\n"+readString(t, path)+"# trailer"), 0o644)
	mustPasswd(t, "", "-b", path, "bob", "b-pass")
	mustPasswd(t, "", "-b", "-H", "sha512", path, "carol", "c-pass")
	mustPasswd(t, "", "-b", "-I", "1000", path, "alice", "new-a") // update in place
	p := loadOK(t, path)
	if p.Len() != 3 || !p.Check("alice", []byte("new-a")) || p.Check("alice", []byte("a-pass")) ||
		!p.Check("bob", []byte("b-pass")) || !p.Check("carol", []byte("c-pass")) {
		t.Fatal("users wrong after updates")
	}
	text := readString(t, path)
	lines := strings.Split(text, "\n")
	if lines[0] != "# managed by hand" || lines[1] != "" || !strings.HasPrefix(lines[2], "alice:$7$1000$") ||
		lines[3] != "# trailer" || !strings.HasPrefix(lines[4], "bob:$7$") || !strings.HasPrefix(lines[5], "carol:$6$") {
		t.Errorf("layout not kept:\n%s", text)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after an update %v, want 0600", fi.Mode().Perm())
	}

	mustPasswd(t, "", "-D", path, "bob")
	p = loadOK(t, path)
	if p.Len() != 2 || p.Check("bob", []byte("b-pass")) || !strings.Contains(readString(t, path), "# trailer") {
		t.Errorf("delete: %d users:\n%s", p.Len(), readString(t, path))
	}
	code, _, stderr := passwd(t, "", "-D", path, "bob")
	if code != 1 || !strings.Contains(stderr, "not found") {
		t.Errorf("deleting a missing user: exit %d, %q", code, stderr)
	}

	// -c overwrites.
	mustPasswd(t, "", "-c", "-b", "-H", "bcrypt", path, "dave", "d-pass")
	if p := loadOK(t, path); p.Len() != 1 || !p.Check("dave", []byte("d-pass")) {
		t.Error("-c did not overwrite")
	}
	if !strings.HasPrefix(readString(t, path), "dave:$2a$10$") {
		t.Errorf("bcrypt line %q", readString(t, path))
	}
	// No temporary files are left behind.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(ents))
	}
}

func TestPasswdStdin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	mustPasswd(t, "first pw\nfirst pw\n", "-c", path, "alice")
	mustPasswd(t, "crlf pw\r\ncrlf pw", path, "bob") // CRLF, and no newline at the end
	mustPasswd(t, "second\nsecond\n", path, "alice")
	p := loadOK(t, path)
	if !p.Check("alice", []byte("second")) || !p.Check("bob", []byte("crlf pw")) {
		t.Error("passwords from stdin not set")
	}
	for _, c := range []struct{ stdin, want string }{
		{"one\ntwo\n", "do not match"},
		{"only once\n", "second time"},
		{"", "standard input"},
		{"\n\n", "empty password"},
	} {
		before := readString(t, path)
		code, _, stderr := passwd(t, c.stdin, path, "bob")
		if code != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("stdin %q: exit %d, stderr %q, want %q", c.stdin, code, stderr, c.want)
		}
		if readString(t, path) != before {
			t.Errorf("stdin %q: file changed on error", c.stdin)
		}
	}
}

func TestPasswdSymlink(t *testing.T) {
	dir := t.TempDir()
	target, link := filepath.Join(dir, "real"), filepath.Join(dir, "link")
	mustPasswd(t, "", "-c", "-b", target, "a", "pw")
	if err := os.Symlink("real", link); err != nil {
		t.Skip("no symlinks here:", err)
	}
	mustPasswd(t, "", "-b", link, "b", "pw")
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced by a file")
	}
	if p := loadOK(t, target); p.Len() != 2 {
		t.Errorf("target has %d users, want 2", p.Len())
	}
}

func TestPasswdErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pw")
	mustPasswd(t, "", "-c", "-b", path, "alice", "pw")
	broken := filepath.Join(dir, "broken")
	os.WriteFile(broken, []byte("# ok\nbob:plaintext\nalice:plaintext\n"), 0o600)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no args", nil, "usage:"},
		{"one arg", []string{path}, "usage:"},
		{"batch without password", []string{"-b", path, "bob"}, "usage:"},
		{"too many", []string{"-b", path, "bob", "pw", "extra"}, "usage:"},
		{"-c with -D", []string{"-c", "-D", path, "alice"}, "-c and -D"},
		{"-b with -D", []string{"-b", "-D", path, "alice"}, "-b and -D"},
		{"unknown flag", []string{"-x", path, "alice"}, "unknown option -x"},
		{"bad hash", []string{"-b", "-H", "md5", path, "bob", "pw"}, `unknown hash "md5"`},
		{"-H without value", []string{"-H"}, "-H needs an argument"},
		{"bad iterations", []string{"-b", "-I", "0", path, "bob", "pw"}, "iterations"},
		{"-I with bcrypt", []string{"-b", "-H", "bcrypt", "-I", "5", path, "bob", "pw"}, "-I only applies"},
		{"colon in name", []string{"-b", path, "a:b", "pw"}, "':'"},
		{"control char in name", []string{"-b", path, "a\nb", "pw"}, "control"},
		{"comment-like name", []string{"-b", path, "#a", "pw"}, "'#'"},
		{"empty batch password", []string{"-b", path, "bob", ""}, "empty password"},
		{"bcrypt too long", []string{"-b", "-H", "bcrypt", path, "bob", strings.Repeat("x", 73)}, "72 bytes"},
		{"missing file", []string{"-b", filepath.Join(dir, "nope"), "bob", "pw"}, "-c to create"},
		{"broken file", []string{"-b", broken, "carol", "pw"}, broken + ":line 2: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := readString(t, path)
			code, _, stderr := passwd(t, "", c.args...)
			if code != 1 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, c.want)
			}
			if readString(t, path) != before {
				t.Error("file changed")
			}
		})
	}
	// The broken line of the user being changed is replaced, not in the way.
	os.WriteFile(broken, []byte("# ok\nbob:plaintext\n"), 0o600)
	mustPasswd(t, "", "-b", broken, "bob", "pw")
	if p := loadOK(t, broken); !p.Check("bob", []byte("pw")) {
		t.Error("bob's broken line not replaced")
	}

	code, stdout, _ := passwd(t, "", "-h")
	if code != 0 || !strings.Contains(stdout, "usage: broker passwd") {
		t.Errorf("-h: exit %d, %q", code, stdout)
	}
}
