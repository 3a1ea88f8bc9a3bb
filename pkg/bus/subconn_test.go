package bus

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// readerConn builds a subConn that reads from data (no socket: next only uses the reader).
func readerConn(data string, maxRecv int) *subConn {
	return &subConn{r: bufio.NewReaderSize(strings.NewReader(data), 64), maxRecv: maxRecv}
}

func TestSubConnNext(t *testing.T) {
	stream := "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhel\x00o\r\n" +
		"*3\r\n$8\r\nsmessage\r\n$3\r\nch2\r\n$0\r\n\r\n" +
		"*2\r\n$4\r\npong\r\n$0\r\n\r\n" +
		"*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n" +
		"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$20\r\n01234567890123456789\r\n" + // above maxRecv
		"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-1\r\n" +
		"*3\r\n$12\r\nsunsubscribe\r\n$2\r\nch\r\n:0\r\n" +
		"-MOVED 1234 127.0.0.1:7001\r\n"
	c := readerConn(stream, 10)
	want := []struct {
		kind    pushKind
		channel string
		payload string
	}{
		{pushMessage, "ch", "hel\x00o"},
		{pushMessage, "ch2", ""},
		{pushPong, "", ""},
		{pushSubscribe, "ch", ""},
		{pushDiscarded, "ch", ""},
		{pushMessage, "ch", ""},
		{pushUnsubscribe, "ch", ""},
	}
	for i, w := range want {
		kind, ch, p, err := c.next()
		if err != nil || kind != w.kind || string(ch) != w.channel || string(p) != w.payload {
			t.Fatalf("push %d: %v %q %q %v, want %v", i, kind, ch, p, err, w)
		}
	}
	_, _, _, err := c.next()
	var re redisError
	if !errors.As(err, &re) || !strings.HasPrefix(string(re), "MOVED") {
		t.Fatalf("error reply: %v", err)
	}
}

func TestSubConnMalformed(t *testing.T) {
	for _, s := range []string{
		"",
		"+OK\r\n",
		"*1\r\n$4\r\npong\r\n",
		"*9\r\n",
		"*x\r\n",
		"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\r",        // bad CRLF
		"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-7\r\n",                // bad length
		"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$99999999999999999\r\n", // absurd length
		"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n:5\r\n",
		"*3\r\n$7\r\nmessage\r\n$600\r\n" + strings.Repeat("c", 600) + "\r\n$0\r\n\r\n", // channel too long
		"*3\r\n$99\r\nmessage\r\n",
		"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n$1\r\n1\r\n",
		"*3\r\n$6\r\nfoobar\r\n$2\r\nch\r\n:1\r\n",
		"*3\r\n" + strings.Repeat("$", 100) + "\r\n", // line longer than the buffer
		"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhel",
	} {
		if _, _, _, err := readerConn(s, 1<<20).next(); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func FuzzSubConnNext(f *testing.F) {
	f.Add([]byte("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n"))
	f.Add([]byte("*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &subConn{r: bufio.NewReaderSize(bytes.NewReader(data), 64), maxRecv: 256}
		for i := 0; i < 100; i++ {
			_, _, p, err := c.next()
			if err != nil {
				return
			}
			if len(p) > 256 {
				t.Fatalf("payload of %d bytes above maxRecv", len(p))
			}
		}
	})
}

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, "SSUBSCRIBE", "a", ""))
	if want := "*3\r\n$10\r\nSSUBSCRIBE\r\n$1\r\na\r\n$0\r\n\r\n"; got != want {
		t.Fatalf("%q", got)
	}
}
