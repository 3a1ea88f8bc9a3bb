package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStoreAuthenticate(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	writeFile(t, pwFile, mosquittoFile)
	right, wrong := []byte("hunter2"), []byte("nope")
	cases := []struct {
		name       string
		pwFile     string
		anonymous  bool
		user       string
		password   []byte
		hasUser    bool
		want       bool
		reasonable string
	}{
		{"file: right password", pwFile, false, "bob", right, true, true, ""},
		{"file: wrong password", pwFile, true, "bob", wrong, true, false, "allowAnonymous does not rescue a bad password"},
		{"file: no password", pwFile, true, "bob", nil, true, false, ""},
		{"file: unknown user", pwFile, true, "mallory", right, true, false, ""},
		{"file: empty user name", pwFile, true, "", nil, true, false, ""},
		{"file: anonymous allowed", pwFile, true, "", nil, false, true, ""},
		{"file: anonymous refused", pwFile, false, "", nil, false, false, ""},
		{"no file: anonymous allowed", "", true, "", nil, false, true, ""},
		{"no file: anonymous refused", "", false, "", nil, false, false, ""},
		{"no file: any user name", "", false, "whoever", wrong, true, false, "no way to authenticate: everyone is refused (mosquitto 2.0)"},
		{"no file: any user name and password", "", false, "whoever", right, true, false, ""},
		{"no file: any user name, anonymous on", "", true, "whoever", nil, true, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewStore(c.pwFile, "", c.anonymous)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Authenticate(c.user, c.password, c.hasUser); got != c.want {
				t.Errorf("Authenticate(%q, %q, %v) = %v, want %v %s", c.user, c.password, c.hasUser, got, c.want, c.reasonable)
			}
		})
	}
}

func TestStoreAllowed(t *testing.T) {
	s, err := NewStore("", "", true)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Allowed("c", "", "$SYS/x", Write) || !s.Allowed("c", "u", "#", Subscribe) {
		t.Error("without an ACL file everything should be allowed")
	}
	aclFile := filepath.Join(t.TempDir(), "acl")
	writeFile(t, aclFile, "user u\ntopic read a/#\n")
	if s, err = NewStore("", aclFile, true); err != nil {
		t.Fatal(err)
	}
	if !s.Allowed("c", "u", "a/b", Read) || s.Allowed("c", "u", "a/b", Write) || s.Allowed("c", "", "a/b", Read) {
		t.Error("ACL file not applied")
	}
}

func TestStoreLoadErrors(t *testing.T) {
	dir := t.TempDir()
	badPw, badACL := filepath.Join(dir, "pw"), filepath.Join(dir, "acl")
	writeFile(t, badPw, "# x\nalice\n")
	writeFile(t, badACL, "topic read a\nfrobnicate\n")
	_, err := NewStore(badPw, badACL, false)
	if err == nil {
		t.Fatal("NewStore accepted bad files")
	}
	for _, want := range []string{"password file: " + badPw + ":line 2: ", "acl file: " + badACL + ":line 2: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Errorf("error %v does not unwrap to a ParseError", err)
	}
	if _, err := NewStore(filepath.Join(dir, "missing"), "", false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestStoreReload(t *testing.T) {
	dir := t.TempDir()
	pwFile, aclFile := filepath.Join(dir, "pw"), filepath.Join(dir, "acl")
	h1, _ := HashPassword("one", PBKDF2)
	h2, _ := HashPassword("two", PBKDF2)
	writeFile(t, pwFile, "u:"+h1+"\n")
	writeFile(t, aclFile, "user u\ntopic read old/#\n")
	s, err := NewStore(pwFile, aclFile, false)
	if err != nil {
		t.Fatal(err)
	}
	old := func() bool {
		return s.Authenticate("u", []byte("one"), true) && s.Allowed("c", "u", "old/x", Read) && !s.Allowed("c", "u", "new/x", Read)
	}
	if !old() {
		t.Fatal("initial state wrong")
	}

	// A bad password file keeps the old state for both files, even with a good new ACL.
	writeFile(t, pwFile, "u:"+h2+"\nbroken\n")
	writeFile(t, aclFile, "user u\ntopic read new/#\n")
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), pwFile+":line 2") {
		t.Errorf("Reload with a bad password file: %v", err)
	}
	if !old() {
		t.Error("a failed Reload changed the state")
	}
	// A bad ACL likewise.
	writeFile(t, pwFile, "u:"+h2+"\n")
	writeFile(t, aclFile, "user u\ntopic read new/#\ntopic sometimes x\n")
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), aclFile+":line 3") {
		t.Errorf("Reload with a bad ACL: %v", err)
	}
	if !old() {
		t.Error("a failed Reload changed the state")
	}
	// A missing file too.
	os.Remove(aclFile)
	if err := s.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Reload with a missing ACL: %v", err)
	}
	if !old() {
		t.Error("a failed Reload changed the state")
	}
	// Both good: both swap.
	writeFile(t, aclFile, "user u\ntopic read new/#\n")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Authenticate("u", []byte("one"), true) || !s.Authenticate("u", []byte("two"), true) ||
		s.Allowed("c", "u", "old/x", Read) || !s.Allowed("c", "u", "new/x", Read) {
		t.Error("Reload did not swap both files")
	}
}

// TestStoreConcurrentReload runs checks while the files change and reload; with -race this shows
// readers never see a half-built state, and every snapshot pairs the password file and the ACL of
// one generation.
func TestStoreConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	pwFile, aclFile := filepath.Join(dir, "pw"), filepath.Join(dir, "acl")
	hashes := [2]string{}
	for i, pw := range []string{"zero", "one"} {
		hashes[i], _ = HashPassword(pw, SHA512)
	}
	write := func(gen int) {
		tmpPw, tmpACL := pwFile+".tmp", aclFile+".tmp"
		writeFile(t, tmpPw, "u:"+hashes[gen]+"\n")
		writeFile(t, tmpACL, "user u\ntopic read gen"+[]string{"0", "1"}[gen]+"\n")
		// Rename so Reload never reads a half-written file.
		if err := os.Rename(tmpPw, pwFile); err != nil {
			t.Error(err)
		}
		if err := os.Rename(tmpACL, aclFile); err != nil {
			t.Error(err)
		}
	}
	write(0)
	s, err := NewStore(pwFile, aclFile, false)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Separate calls may straddle a reload, so take one snapshot, as each call does.
				st := s.cur.Load()
				a0, a1 := st.passwords.Check("u", []byte("zero")), st.passwords.Check("u", []byte("one"))
				r0, r1 := st.acl.Allowed("c", "u", "gen0", Read), st.acl.Allowed("c", "u", "gen1", Read)
				s.Authenticate("u", []byte("one"), true)
				s.Allowed("c", "u", "gen1", Read)
				if a0 == a1 || r0 == r1 || a0 != r0 {
					t.Errorf("inconsistent snapshot: passwords %v/%v, acl %v/%v", a0, a1, r0, r1)
					return
				}
			}
		})
	}
	for i := range 50 {
		write(i % 2)
		if err := s.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestStoreRefusesEveryone(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	writeFile(t, pwFile, mosquittoFile)
	for _, c := range []struct {
		pw    string
		anon  bool
		wants bool
	}{{"", false, true}, {"", true, false}, {pwFile, false, false}, {pwFile, true, false}} {
		s, err := NewStore(c.pw, "", c.anon)
		if err != nil {
			t.Fatal(err)
		}
		if s.RefusesEveryone() != c.wants {
			t.Errorf("password file %q, anonymous %v: RefusesEveryone %v", c.pw, c.anon, s.RefusesEveryone())
		}
	}
}

// The probe topics belong to the probe user alone, whatever the ACL file grants; without a probe
// user they belong to nobody. Other topics follow the ACL file as before.
func TestStoreProbeTopicsBelongToTheProbeUser(t *testing.T) {
	aclFile := filepath.Join(t.TempDir(), "acl")
	// The ACL grants everyone everything, $-topics included, the probe topics by name too.
	writeFile(t, aclFile, "topic readwrite $mcloudtt/#\ntopic readwrite #\npattern readwrite $mcloudtt/#\npattern readwrite #\n")
	const probe = "$mcloudtt/probe/gateway-1/broker-a/broker-b"
	for _, withACL := range []bool{false, true} {
		file := ""
		if withACL {
			file = aclFile
		}
		s, err := NewStore("", file, true, WithProbeUser("health-gateway"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			user, topic string
			access      Access
			want        bool
		}{
			{"health-gateway", probe, Write, true},
			{"health-gateway", probe, Read, true},
			{"health-gateway", "$mcloudtt/probe/gateway-1/#", Subscribe, true},
			{"health-gateway", "$share/g/$mcloudtt/probe/#", Subscribe, true},
			{"health-gateway", "a/b", Write, true},
			{"device", probe, Write, false},
			{"device", probe, Read, false},
			{"", probe, Write, false},
			{"device", "$mcloudtt/probe/#", Subscribe, false},
			{"device", "$mcloudtt/probe/+/+/+", Subscribe, false},
			{"device", "$share/g/$mcloudtt/probe/#", Subscribe, false},
			{"device", "$mcloudtt/#", Subscribe, false},
			{"device", "$mcloudtt/+/x/y/z", Subscribe, false},
			{"device", "#", Subscribe, true},
			{"device", "+/probe/#", Subscribe, true},
			{"device", "a/b", Write, true},
			{"device", "$mcloudtt/other", Write, true},
			{"device", "$mcloudtt/+", Subscribe, true},
		} {
			if got := s.Allowed("client-1", c.user, c.topic, c.access); got != c.want {
				t.Errorf("ACL file %v: user %q %s %q = %v, want %v", withACL, c.user, c.access, c.topic, got, c.want)
			}
		}
	}
	nobody, err := NewStore("", aclFile, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"", "health-gateway"} {
		if nobody.Allowed("c", u, probe, Write) || nobody.Allowed("c", u, "$mcloudtt/probe/#", Subscribe) {
			t.Errorf("without a probe user, %q may use the probe topics", u)
		}
	}
	if nobody.ProbeUser() != "" {
		t.Fatal("probe user")
	}
}
