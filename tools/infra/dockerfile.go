package infra

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Instruction is one Dockerfile instruction with its continuation lines joined.
type Instruction struct {
	Cmd  string // upper-case: FROM, RUN, COPY, ...
	Args string
	Line int
}

// Stage is one FROM and what follows it.
type Stage struct {
	From         string // the image reference as written
	Name         string // AS name, or ""
	Instructions []Instruction
}

// ParseDockerfile splits a Dockerfile into stages. It understands what our Dockerfiles use:
// comments, parser directives, backslash continuations; not heredocs.
func ParseDockerfile(path string) ([]Stage, []Instruction, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var (
		all     []Instruction
		pending strings.Builder
		start   int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if pending.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if pending.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // comment inside a continuation
		}
		if pending.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(trimmed, "\\") {
			pending.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		pending.WriteString(trimmed)
		cmd, args, _ := strings.Cut(pending.String(), " ")
		all = append(all, Instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start})
		pending.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if pending.Len() > 0 {
		return nil, nil, fmt.Errorf("%s: ends inside a line continuation", path)
	}
	var stages []Stage
	var global []Instruction
	for _, in := range all {
		if in.Cmd == "FROM" {
			fields := strings.Fields(in.Args)
			var st Stage
			for i := 0; i < len(fields); i++ {
				switch {
				case strings.HasPrefix(fields[i], "--"):
				case strings.EqualFold(fields[i], "AS") && i+1 < len(fields):
					st.Name = fields[i+1]
					i++
				case st.From == "":
					st.From = fields[i]
				}
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			global = append(global, in) // ARGs before the first FROM
			continue
		}
		stages[len(stages)-1].Instructions = append(stages[len(stages)-1].Instructions, in)
	}
	return stages, global, nil
}
