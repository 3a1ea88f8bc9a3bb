package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	var ran []string
	p := Program{Name: "svc", Summary: "a service", More: "See README.md.",
		Commands: []Command{{Name: "do", Args: "X", Summary: "does X", Run: func(a []string) int { ran = a; return 3 }}}}
	cases := []struct {
		args      []string
		code      int
		serve     bool
		out, errs string
	}{
		{nil, 0, true, "", ""},
		{[]string{"--help"}, 0, false, "svc do X", ""},
		{[]string{"-h"}, 0, false, "See README.md.", ""},
		{[]string{"do", "a", "b"}, 3, false, "", ""},
		{[]string{"serve"}, 2, false, "", `unknown argument "serve"`},
		{[]string{"--port", "1"}, 2, false, "", `unknown flag "--port"`},
	}
	for _, c := range cases {
		var out, errs bytes.Buffer
		code, serve := Dispatch(p, c.args, &out, &errs)
		if code != c.code || serve != c.serve {
			t.Errorf("%q: code %d serve %v, want %d %v", c.args, code, serve, c.code, c.serve)
		}
		if !strings.Contains(out.String(), c.out) || !strings.Contains(errs.String(), c.errs) {
			t.Errorf("%q: stdout %q stderr %q", c.args, out.String(), errs.String())
		}
		if c.code == 2 && !strings.Contains(errs.String(), "Usage:") {
			t.Errorf("%q: the refusal does not show the usage: %q", c.args, errs.String())
		}
	}
	if strings.Join(ran, ",") != "a,b" {
		t.Errorf("subcommand got %q", ran)
	}
}
