// Package procfs reads what the load generator reports about the broker process and
// the host from Linux's /proc: CPU time from /proc/PID/stat, resident and peak
// resident memory from /proc/PID/status, and host CPU from /proc/stat.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// ticksPerSecond is USER_HZ, the unit of the CPU times in /proc. It is 100 on every
// Linux architecture Go supports (the kernel's CONFIG_HZ does not change it).
const ticksPerSecond = 100

// ErrFormat means a /proc file did not look as expected.
var ErrFormat = errors.New("unexpected /proc format")

// Root is where proc is mounted; tests point it at a fixture directory.
var Root = "/proc"

// Process is a snapshot of one process.
type Process struct {
	RSSKB int64   // VmRSS: resident set now
	HWMKB int64   // VmHWM: peak resident set since start or the last ResetPeak
	CPU   float64 // utime+stime in seconds
}

// Read snapshots process pid.
func Read(pid int) (Process, error) {
	var p Process
	stat, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", Root, pid))
	if err != nil {
		return p, err
	}
	if p.CPU, err = parseStatCPU(stat); err != nil {
		return p, fmt.Errorf("%s/%d/stat: %w", Root, pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("%s/%d/status", Root, pid))
	if err != nil {
		return p, err
	}
	if p.RSSKB, err = statusKB(status, "VmRSS"); err != nil {
		return p, fmt.Errorf("%s/%d/status: %w", Root, pid, err)
	}
	if p.HWMKB, err = statusKB(status, "VmHWM"); err != nil {
		return p, fmt.Errorf("%s/%d/status: %w", Root, pid, err)
	}
	return p, nil
}

// ResetPeak resets pid's VmHWM to its current VmRSS (writing 5 to clear_refs, Linux
// 4.0+), so the next Read reports the peak of this run rather than of the process's
// whole life. It needs permission to write that file (the same user, or root).
func ResetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("%s/%d/clear_refs", Root, pid), []byte("5"), 0)
}

// parseStatCPU returns utime+stime in seconds from the contents of /proc/PID/stat.
// The command name (field 2) may contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, ErrFormat
	}
	f := bytes.Fields(b[i+1:])
	// After the name: state(3) ... utime is field 14, stime 15, i.e. f[11], f[12].
	if len(f) < 13 {
		return 0, ErrFormat
	}
	u, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, ErrFormat
	}
	return float64(u+s) / ticksPerSecond, nil
}

// statusKB returns the value in kB of key in the contents of /proc/PID/status.
func statusKB(b []byte, key string) (int64, error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		rest, ok := bytes.CutPrefix(line, []byte(key+":"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			return 0, ErrFormat
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, fmt.Errorf("%w: no %s", ErrFormat, key)
}

// Host is host-wide CPU time in seconds, summed over all CPUs.
type Host struct {
	// Busy is user+nice+system+irq+softirq. Per-task utime+stime include softirq work
	// done in task context, so irq and softirq belong here too.
	Busy  float64
	Steal float64
}

// ReadHost snapshots host CPU time from /proc/stat.
func ReadHost() (Host, error) {
	b, err := os.ReadFile(Root + "/stat")
	if err != nil {
		return Host{}, err
	}
	return parseHost(b)
}

func parseHost(b []byte) (Host, error) {
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
	}
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return Host{}, ErrFormat
	}
	var v [9]float64
	for i := 1; i < 9; i++ {
		n, err := strconv.ParseUint(string(f[i]), 10, 64)
		if err != nil {
			return Host{}, ErrFormat
		}
		v[i] = float64(n) / ticksPerSecond
	}
	// cpu user nice system idle iowait irq softirq steal
	return Host{Busy: v[1] + v[2] + v[3] + v[6] + v[7], Steal: v[8]}, nil
}
