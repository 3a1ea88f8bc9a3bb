package auth

// Interop with the real mosquitto (Debian's mosquitto package: mosquitto, mosquitto_passwd,
// mosquitto_pub, mosquitto_sub). Each test skips, saying why, if a program is missing.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		t.Skipf("%s not installed (Debian package mosquitto / mosquitto-clients): skipping the mosquitto interop check", name)
	}
	return p
}

// TestMosquittoPasswdFilesLoad: files written by mosquitto_passwd load here and check right.
func TestMosquittoPasswdFilesLoad(t *testing.T) {
	mp := lookTool(t, "mosquitto_passwd")
	path := filepath.Join(t.TempDir(), "pw")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(mp, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %q: %v\n%s", args, err, out)
		}
	}
	run("-c", "-b", path, "alice", "alice's pass")
	run("-b", "-H", "sha512", path, "bob", "bob:pw with colon")
	run("-b", "-H", "sha512-pbkdf2", "-I", "1000", path, "carol", "ünïcödé")
	run("-b", path, "dave", "d")
	run("-D", path, "dave")
	p := loadOK(t, path)
	if p.Len() != 3 {
		t.Fatalf("Len = %d, want 3\n%s", p.Len(), readString(t, path))
	}
	for user, pw := range map[string]string{"alice": "alice's pass", "bob": "bob:pw with colon", "carol": "ünïcödé"} {
		if !p.Check(user, []byte(pw)) {
			t.Errorf("%s's mosquitto_passwd hash refused", user)
		}
		if p.Check(user, []byte(pw+"x")) {
			t.Errorf("%s accepted with a wrong password", user)
		}
	}
	// And the other way round: our passwd edits a mosquitto_passwd file and mosquitto_passwd
	// edits ours, without either complaining.
	mustPasswd(t, "", "-b", path, "erin", "e")
	run("-b", path, "frank", "f")
	p = loadOK(t, path)
	if p.Len() != 5 || !p.Check("erin", []byte("e")) || !p.Check("frank", []byte("f")) || !p.Check("alice", []byte("alice's pass")) {
		t.Errorf("mixed edits:\n%s", readString(t, path))
	}
}

// mosquittoBroker runs mosquitto on a free loopback port with the given config lines.
func mosquittoBroker(t *testing.T, conf ...string) (port string) {
	t.Helper()
	bin := lookTool(t, "mosquitto")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	lines := append([]string{"listener " + port + " 127.0.0.1", "persistence false", "log_dest stderr"}, conf...)
	if os.Geteuid() == 0 {
		// As root mosquitto drops to user "mosquitto", who may not read our 0600 files.
		lines = append(lines, "user root")
	}
	confPath := filepath.Join(t.TempDir(), "mosquitto.conf")
	writeFile(t, confPath, strings.Join(lines, "\n")+"\n")
	var log strings.Builder
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Stderr, cmd.Stdout = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case err := <-exited:
			t.Fatalf("mosquitto exited: %v\n%s", err, log.String())
		default:
		}
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %s:\n%s", port, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client is who connects: client id, user name ("" for none) and password.
type client struct{ id, user, password string }

func (c client) args(port string) []string {
	a := []string{"-h", "127.0.0.1", "-p", port, "-i", c.id, "-q", "1"}
	if c.user != "" {
		a = append(a, "-u", c.user, "-P", c.password)
	}
	return a
}

func mosquittoPub(ctx context.Context, t *testing.T, port string, c client, topic, payload string) error {
	t.Helper()
	args := append(c.args(port), "-t", topic, "-m", payload)
	out, err := exec.CommandContext(ctx, lookTool(t, "mosquitto_pub"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mosquitto_pub as %+v: %v: %s", c, err, out)
	}
	return nil
}

// subscriber is a mosquitto_sub printing "topic payload" lines.
type subscriber struct {
	lines chan string
}

func mosquittoSub(ctx context.Context, t *testing.T, port string, c client, filter string) *subscriber {
	t.Helper()
	args := append(c.args(port), "-t", filter, "-v")
	cmd := exec.CommandContext(ctx, lookTool(t, "mosquitto_sub"), args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &subscriber{lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return s
}

// until collects lines up to and including one equal to stop.
func (s *subscriber) until(t *testing.T, stop string, timeout time.Duration) ([]string, bool) {
	t.Helper()
	var got []string
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				return got, false
			}
			if l == stop {
				return got, true
			}
			got = append(got, l)
		case <-timer.C:
			return got, false
		}
	}
}

// sync publishes fence messages until the subscriber prints one, so its subscription is known to
// be in place (and everything published before has been delivered).
func (s *subscriber) sync(ctx context.Context, t *testing.T, port string, pub client, tag string) {
	t.Helper()
	for i := 0; ; i++ {
		msg := tag + "-" + strconv.Itoa(i)
		if err := mosquittoPub(ctx, t, port, pub, "fence", msg); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.until(t, "fence "+msg, 300*time.Millisecond); ok {
			return
		}
		if i == 30 {
			t.Fatalf("subscriber never saw fence %s", tag)
		}
	}
}

// TestMosquittoAcceptsOurPasswordFile: mosquitto authenticates users from a file RunPasswd wrote.
func TestMosquittoAcceptsOurPasswordFile(t *testing.T) {
	lookTool(t, "mosquitto_pub")
	pwFile := filepath.Join(t.TempDir(), "pw")
	mustPasswd(t, "", "-c", "-b", pwFile, "alice", "alice pass")
	mustPasswd(t, "", "-b", "-I", "1000", pwFile, "bob", "bob-pass")
	mustPasswd(t, "", "-b", "-H", "sha512", pwFile, "carol", "carol-pass")
	mustPasswd(t, "dave pw\ndave pw\n", pwFile, "dave")
	port := mosquittoBroker(t, "password_file "+pwFile, "allow_anonymous false")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		client
		ok bool
	}{
		{client{"c1", "alice", "alice pass"}, true},
		{client{"c2", "bob", "bob-pass"}, true},
		{client{"c3", "carol", "carol-pass"}, true},
		{client{"c4", "dave", "dave pw"}, true},
		{client{"c5", "alice", "alice-pass"}, false},
		{client{"c6", "erin", "x"}, false},
		{client{"c7", "", ""}, false},
	} {
		err := mosquittoPub(ctx, t, port, c.client, "t", "x")
		if (err == nil) != c.ok {
			t.Errorf("%+v: mosquitto said %v, want ok=%v", c.client, err, c.ok)
		}
	}
}

// The ACL both brokers get in TestACLAgainstMosquitto. Every section can read "fence".
const diffACL = `
topic read public/#
topic write public/inbox
topic read fence
pattern readwrite devices/%c/#
pattern read users/%u/#
pattern deny devices/%c/locked
pattern write telemetry/%u/%c
pattern read broadcast

user admin
topic readwrite #

user watcher
topic read #

user alice
topic readwrite alice/#
topic deny alice/secret
topic read shared/+/status
topic write shared/alice/status
topic read fence

user u+
topic readwrite plus/#
topic read fence
`

// TestACLAgainstMosquitto runs the same password file and ACL in mosquitto and here, and checks
// that PUBLISH (Write) and delivery (Read) decisions agree — except where this package documents
// that it is stricter.
func TestACLAgainstMosquitto(t *testing.T) {
	lookTool(t, "mosquitto_pub")
	lookTool(t, "mosquitto_sub")
	dir := t.TempDir()
	pwFile, aclFile := filepath.Join(dir, "pw"), filepath.Join(dir, "acl")
	users := map[string]string{"admin": "admin-pw", "watcher": "watcher-pw", "alice": "alice-pw", "u+": "plus-pw"}
	mustPasswd(t, "", "-c", "-b", pwFile, "admin", users["admin"])
	for _, u := range []string{"watcher", "alice", "u+"} {
		mustPasswd(t, "", "-b", "-I", "10", pwFile, u, users[u])
	}
	writeFile(t, aclFile, diffACL)
	acl, err := LoadACL(aclFile)
	if err != nil {
		t.Fatal(err)
	}
	port := mosquittoBroker(t, "password_file "+pwFile, "acl_file "+aclFile, "allow_anonymous true")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	mk := func(id, user string) client { return client{id, user, users[user]} }
	admin := mk("admin", "admin")

	type diffCase struct {
		c       client
		topic   string
		differs bool // documented: mosquitto allows, this package denies
	}
	cases := []diffCase{
		{mk("anon1", ""), "public/inbox", false},
		{mk("anon1", ""), "public/news", false},
		{mk("anon1", ""), "devices/anon1/temp", false},
		{mk("anon1", ""), "devices/anon2/temp", false},
		{mk("anon1", ""), "devices/anon1/locked", false},
		{mk("anon1", ""), "users/anon1/x", false},
		{mk("anon1", ""), "telemetry//anon1", false},
		{mk("a/b", ""), "devices/a/b/temp", false},
		{mk("a/b", ""), "devices/a/temp", false},
		{mk("a+b", ""), "public/inbox", false},
		{mk("x", "alice"), "alice/x", false},
		{mk("x", "alice"), "alice/secret", false},
		{mk("x", "alice"), "alice/secret/y", false},
		{mk("x", "alice"), "shared/alice/status", false},
		{mk("x", "alice"), "shared/bob/status", false},
		{mk("x", "alice"), "public/inbox", false},
		{mk("x", "alice"), "devices/x/temp", false},
		{mk("x", "alice"), "telemetry/alice/x", false},
		{mk("x", "alice"), "telemetry/alice/y", false},
		{mk("y", "u+"), "plus/a", false},
		{mk("y", "u+"), "devices/y/temp", false},
		{mk("admin", "admin"), "anything/at/all", false},
		{mk("admin", "admin"), "devices/admin/locked", true}, // user topic grant vs pattern deny
	}

	t.Run("write", func(t *testing.T) {
		watch := mk("watcher", "watcher")
		sub := mosquittoSub(ctx, t, port, watch, "#")
		sub.sync(ctx, t, port, admin, "w0")
		for i, c := range cases {
			if err := mosquittoPub(ctx, t, port, c.c, c.topic, "case"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		mosquittoPub(ctx, t, port, admin, "fence", "end")
		got, ok := sub.until(t, "fence end", 10*time.Second)
		if !ok {
			t.Fatalf("no end fence; got %q", got)
		}
		delivered := make(map[string]bool)
		for _, l := range got {
			if _, payload, ok := strings.Cut(l, " "); ok {
				delivered[payload] = true
			}
		}
		if n := len(delivered); n < 5 || n > len(cases)-5 {
			t.Errorf("mosquitto delivered %d of %d cases; the cases should exercise both outcomes", n, len(cases))
		}
		for i, c := range cases {
			mosq := delivered["case"+strconv.Itoa(i)]
			ours := acl.Allowed(c.c.id, c.c.user, c.topic, Write)
			want := mosq
			if c.differs {
				if !mosq {
					t.Errorf("%+v publish %q: mosquitto refused a case documented as allowed there", c.c, c.topic)
				}
				want = false
			}
			if ours != want {
				t.Errorf("client %q user %q publish %q: mosquitto %v, ours %v", c.c.id, c.c.user, c.topic, mosq, ours)
			}
		}
	})

	t.Run("read", func(t *testing.T) {
		readers := []client{mk("anon1", ""), mk("a/b", ""), mk("a+b", ""), mk("x", "alice"), mk("y", "u+"), mk("r1", "watcher")}
		topics := []string{"public/news", "public/inbox", "devices/anon1/temp", "devices/anon1/locked", "devices/a/b/t",
			"devices/ab/t", "users/alice/t", "alice/x", "alice/secret", "shared/x/status", "shared/x/status/y",
			"plus/a", "devices/y/t", "devices/x/t", "broadcast", "devices/r1/locked", "elsewhere"}
		subs := make([]*subscriber, len(readers))
		for i, r := range readers {
			subs[i] = mosquittoSub(ctx, t, port, r, "#")
			subs[i].sync(ctx, t, port, admin, "r"+strconv.Itoa(i))
		}
		for _, topic := range topics {
			if err := mosquittoPub(ctx, t, port, admin, topic, "m"); err != nil {
				t.Fatal(err)
			}
		}
		mosquittoPub(ctx, t, port, admin, "fence", "end")
		total := 0
		defer func() {
			if n := len(readers) * len(topics); total < 10 || total > n-10 {
				t.Errorf("mosquitto delivered %d of %d; the cases should exercise both outcomes", total, n)
			}
		}()
		for i, r := range readers {
			got, ok := subs[i].until(t, "fence end", 10*time.Second)
			if !ok {
				t.Fatalf("%+v: no end fence; got %q", r, got)
			}
			delivered := make(map[string]bool)
			for _, l := range got {
				delivered[strings.TrimSuffix(l, " m")] = true
			}
			total += len(delivered)
			for _, topic := range topics {
				mosq, ours := delivered[topic], acl.Allowed(r.id, r.user, topic, Read)
				want := mosq
				if r.user == "watcher" && topic == "devices/r1/locked" {
					// documented: watcher's `topic read #` beats `pattern deny` in mosquitto only
					if !mosq {
						t.Errorf("mosquitto did not deliver %q to watcher, a case documented as allowed there", topic)
					}
					want = false
				}
				if ours != want {
					t.Errorf("client %q user %q read %q: mosquitto %v, ours %v", r.id, r.user, topic, mosq, ours)
				}
			}
		}
	})
}
