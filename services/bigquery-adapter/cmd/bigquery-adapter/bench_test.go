package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAdapterDrain measures the adapter binary draining 200,000 export entries (short
// payloads, written beforehand) into the emulator, per batch size: rows per second and the
// adapter's CPU time per 100,000 rows (user + system, from /proc). Run with -benchtime 1x
// (make bench-adapter); each size gets a fresh Redis and emulator.
func BenchmarkAdapterDrain(b *testing.B) {
	const rows = 200_000
	for _, size := range []int{100, 500, 2000} {
		b.Run("batch="+strconv.Itoa(size), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				s := newStack(b)
				// 50 messages per entry: a batch closes at the first entry that reaches the
				// batch size, so entries must be smaller than the smallest size measured.
				prod := s.exporterBatch(rows, 50)
				exportN(b, prod, 0, rows)
				for prod.Stats().Exported < rows {
					time.Sleep(10 * time.Millisecond)
				}
				p, _ := s.adapter("bench-"+strconv.Itoa(size), s.emu.Endpoint, "ADAPTER_BATCH_ROWS="+strconv.Itoa(size))
				// The rate is taken between the first count the table moved past and the last,
				// so the adapter's start does not count; its CPU is counted from its start.
				var first int64
				var start time.Time
				deadline := time.Now().Add(2 * time.Minute)
				for n := int64(0); n < rows; {
					n = s.count("SELECT COUNT(*) FROM " + table)
					if n > 0 && start.IsZero() {
						first, start = n, time.Now()
					}
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d rows after 2 minutes", n, rows)
					}
					time.Sleep(200 * time.Millisecond) // a count costs the emulator CPU too
				}
				elapsed := time.Since(start)
				cpu := procCPU(b, p.Cmd.Process.Pid)
				_ = p.Signal(syscall.SIGTERM)
				rate := float64(rows-first) / elapsed.Seconds()
				b.ReportMetric(rate, "rows/s")
				b.ReportMetric(cpu.Seconds()*100_000/rows, "cpu-s/100k-rows")
				fmt.Fprintf(os.Stderr, "bench-adapter: batch %5d: %6.0f rows/s, adapter CPU %.2f s per 100k rows (%d rows in %v)\n",
					size, rate, cpu.Seconds()*100_000/rows, rows-first, elapsed.Round(time.Millisecond))
			}
		})
	}
}

// procCPU returns the user + system CPU time of process pid so far.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name (which is in parentheses and may hold spaces).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}
