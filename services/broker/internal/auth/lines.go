package auth

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// maxLine bounds one line of a password or ACL file. A user name or topic filter may be 65535
// bytes (MQTT's string limit), so lines are allowed well past bufio.Scanner's 64 KiB default.
const maxLine = 1 << 20

// eachLine calls fn with every line of r (1-based number, without the line ending), stopping at
// the first error. A UTF-8 byte order mark at the start of the file is dropped, as editors on
// Windows like to add one.
func eachLine(r io.Reader, name string, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &ParseError{File: name, Line: n + 1, Reason: "line longer than 1 MiB"}
		}
		return err
	}
	return nil
}
