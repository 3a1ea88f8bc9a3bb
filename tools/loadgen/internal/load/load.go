// Package load is the load generator: it parses the command line, runs one mode
// (pubsub, conns or redis) against a broker or redis-server, and reports the result as
// human-readable lines followed by a one-line JSON summary.
//
// The work happens in these files: config.go (flags and their validation), client.go
// (connections and handshakes), pubsub.go (the pubsub and redis modes, with their
// setup in pubsub_setup.go, read loops in pubsub_readers.go and delivery wait and
// tally in pubsub_report.go), conns.go (the idle connection mode), summary.go (what is
// reported), payload.go (what a message carries).
package load

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// Main runs the load generator with args (without the program name) and returns the
// process exit code: 0 when the run completed without errors (loss alone is a result,
// not an error), 1 when it failed or timed out, 2 for a bad command line. The last
// line written to stdout is always the JSON summary, except for -h.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	t0 := time.Now()
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	errs := &errorLog{}
	var s *Summary
	code := 1
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		errs.add(err)
		s = &Summary{Mode: cfg.Mode, Addr: cfg.Addr}
		code = 2
	} else {
		switch cfg.Mode {
		case "conns":
			s = runConns(ctx, cfg, errs)
		case "storm":
			s = runStorm(ctx, cfg, errs)
		case "redis":
			s = runPubSub(ctx, cfg, true, errs)
		default:
			s = runPubSub(ctx, cfg, false, errs)
		}
	}
	s.Tool = "loadgen"
	s.Label = cfg.Label
	s.Load1 = loadavg1()
	s.ElapsedSecs = round(time.Since(t0).Seconds(), 3)
	s.Errors, s.FirstError = errs.get()
	s.OK = s.Errors == 0 && !s.TimedOut && code != 2
	report(stdout, s, cfg.Quiet)
	if s.OK {
		return 0
	}
	return code
}
