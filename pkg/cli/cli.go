// Package cli is the command line of the MCloudTT service binaries. A service is configured by
// environment variables and serves when started without arguments; its arguments are only
// subcommands (broker passwd, bigquery-adapter query) and --help. Anything else is refused with
// exit code 2 instead of being ignored, so `broker --port 1884` does not start a broker on :1883.
package cli

import (
	"fmt"
	"io"
	"strings"
)

// Command is a subcommand of a service binary.
type Command struct {
	Name    string
	Args    string // the synopsis of its arguments, as in "[-c] FILE USER"
	Summary string
	// Run runs it with the arguments after its name and returns the exit code.
	Run func(args []string) int
}

// Program describes a service binary for Dispatch and its usage text.
type Program struct {
	Name    string // the binary's name, as in "broker"
	Summary string // one line: what it does
	// Commands are its subcommands (none: it only serves).
	Commands []Command
	// Env writes the environment variables it reads, one a line, with their defaults.
	Env func(w io.Writer)
	// More is printed last: where the variables are explained.
	More string
}

// Dispatch looks at a binary's arguments (without the program name). It returns serve = true when
// there are none: the caller starts the service. Otherwise it runs the subcommand or prints the
// usage, and returns the exit code: 0 for --help, 2 for an argument it does not know.
func Dispatch(p Program, args []string, stdout, stderr io.Writer) (code int, serve bool) {
	if len(args) == 0 {
		return 0, true
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		p.Usage(stdout)
		return 0, false
	}
	for _, c := range p.Commands {
		if args[0] == c.Name {
			return c.Run(args[1:]), false
		}
	}
	what := "argument"
	if strings.HasPrefix(args[0], "-") {
		what = "flag"
	}
	fmt.Fprintf(stderr, "%s: unknown %s %q (the service is configured by environment variables)\n\n", p.Name, what, args[0])
	p.Usage(stderr)
	return 2, false
}

// Usage writes the usage text.
func (p Program) Usage(w io.Writer) {
	fmt.Fprintf(w, "%s — %s\n\nUsage:\n", p.Name, p.Summary)
	fmt.Fprintf(w, "  %s\n      serve, configured by the environment variables below\n", p.Name)
	for _, c := range p.Commands {
		fmt.Fprintf(w, "  %s %s %s\n      %s\n", p.Name, c.Name, c.Args, c.Summary)
	}
	fmt.Fprintf(w, "  %s --help\n      this text\n", p.Name)
	if p.Env != nil {
		fmt.Fprintf(w, "\nEnvironment (name, default):\n")
		p.Env(w)
	}
	if p.More != "" {
		fmt.Fprintf(w, "\n%s\n", p.More)
	}
}

// EnvFormat is the text/template format for envconfig.Usagef that Program.Env implementations
// use: one variable a line with its default.
const EnvFormat = `{{range .}}  {{usage_key . | printf "%-36s"}} {{usage_default .}}
{{end}}`
