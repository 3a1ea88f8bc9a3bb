// Package logging builds the zerolog logger every MCloudTT service uses.
//
// In a cluster the logs are JSON lines whose level sits under "severity" and whose text sits under
// "message", the keys Google Cloud Logging reads. On a terminal the same events are printed in
// zerolog's human-readable console form.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Format selects how log lines are written.
type Format string

const (
	// FormatAuto writes console output when the destination is a terminal and JSON otherwise.
	FormatAuto Format = "auto"
	// FormatJSON always writes JSON lines (Cloud Logging keys).
	FormatJSON Format = "json"
	// FormatConsole always writes human-readable lines.
	FormatConsole Format = "console"
)

// Options configure New. The zero value logs at info level in auto format to stderr.
type Options struct {
	Level   string // trace, debug, info, warn, error; default info
	Format  Format // auto, json, console; default auto
	Service string // added to every line as "service"
	Out     io.Writer
}

// levels maps the accepted level names to zerolog levels. zerolog.ParseLevel cannot be used: it
// compares against LevelFieldMarshalFunc, which init replaces with Cloud Logging's severity names.
var levels = map[string]zerolog.Level{
	"trace": zerolog.TraceLevel, "debug": zerolog.DebugLevel, "info": zerolog.InfoLevel,
	"warn": zerolog.WarnLevel, "warning": zerolog.WarnLevel, "error": zerolog.ErrorLevel,
}

// ValidateLevel reports whether s names a zerolog level.
func ValidateLevel(s string) error {
	if s == "" {
		return nil
	}
	if _, ok := levels[strings.ToLower(s)]; !ok {
		return fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", s)
	}
	return nil
}

// ValidateFormat reports whether s names a Format.
func ValidateFormat(s string) error {
	switch Format(s) {
	case "", FormatAuto, FormatJSON, FormatConsole:
		return nil
	}
	return fmt.Errorf("unknown log format %q (want auto, json or console)", s)
}

// New returns a logger configured by o. Invalid levels fall back to info; validate first with
// ValidateLevel to fail at start instead.
func New(o Options) zerolog.Logger {
	out := o.Out
	if out == nil {
		out = os.Stderr
	}
	level := zerolog.InfoLevel
	if l, ok := levels[strings.ToLower(o.Level)]; ok {
		level = l
	}
	format := o.Format
	if format == "" || format == FormatAuto {
		format = FormatJSON
		if isTerminal(out) {
			format = FormatConsole
		}
	}
	var w io.Writer = out
	if format == FormatConsole {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.RFC3339Nano}
	}
	ctx := zerolog.New(w).Level(level).With().Timestamp()
	if o.Service != "" {
		ctx = ctx.Str("service", o.Service)
	}
	return ctx.Logger()
}

func init() {
	// Cloud Logging reads "message" and "severity"; the level key is replaced by the hook's
	// severity field so that JSON lines carry exactly one of them.
	zerolog.MessageFieldName = "message"
	zerolog.LevelFieldName = "severity"
	zerolog.LevelFieldMarshalFunc = severity
	zerolog.TimeFieldFormat = time.RFC3339Nano
}

// severity maps zerolog levels to Cloud Logging's LogSeverity names.
func severity(l zerolog.Level) string {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return "DEBUG"
	case zerolog.InfoLevel:
		return "INFO"
	case zerolog.WarnLevel:
		return "WARNING"
	case zerolog.ErrorLevel:
		return "ERROR"
	case zerolog.FatalLevel:
		return "CRITICAL"
	case zerolog.PanicLevel:
		return "ALERT"
	}
	return "DEFAULT"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil {
		return false
	}
	return st.Mode()&os.ModeCharDevice != 0
}
