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

// BenchmarkAdapterDrain measures the adapter binary draining 200,000 exported messages (JSON
// payloads of about 100 bytes, written beforehand) into the emulator, with the Storage Write API
// and with insertAll, per batch size: rows per second and the adapter's CPU time per 100,000
// rows (user + system, from /proc). Run with -benchtime 1x (make bench-adapter); each run gets a
// fresh Redis and emulator.
func BenchmarkAdapterDrain(b *testing.B) {
	const rows = 200_000
	for _, api := range []string{"storage", "insertall"} {
		for _, size := range []int{100, 500, 2000} {
			b.Run("api="+api+"/batch="+strconv.Itoa(size), func(b *testing.B) { drain(b, api, size, rows) })
		}
	}
}

func drain(b *testing.B, api string, size, rows int) {
	for i := 0; i < b.N; i++ {
		s := newStack(b)
		// 50 messages per entry: a batch closes at the first entry that reaches the batch size,
		// so entries must be smaller than the smallest size measured.
		prod := s.exporterBatch(rows, 50)
		exportWith(b, prod, 0, rows, func(i int) []byte {
			return []byte(fmt.Sprintf(`{"temperature":%d.%d,"humidity":%d,"battery":{"percent":%d},"seq":%d}`,
				15+i%10, i%10, 30+i%50, 100-i%100, i))
		})
		for prod.Stats().Exported < uint64(rows) {
			time.Sleep(10 * time.Millisecond)
		}
		p, _ := s.adapter("bench-"+strconv.Itoa(size), s.emu.Endpoint, "ADAPTER_BATCH_ROWS="+strconv.Itoa(size),
			"ADAPTER_BIGQUERY_API="+api)
		// The rate is taken between the first count the table moved past and the last,
		// so the adapter's start does not count; its CPU is counted from its start.
		var first int64
		var start time.Time
		deadline := time.Now().Add(2 * time.Minute)
		for n := int64(0); n < int64(rows); {
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
		rate := float64(int64(rows)-first) / elapsed.Seconds()
		perCPU := float64(rows) / cpu.Seconds()
		b.ReportMetric(rate, "rows/s")
		b.ReportMetric(cpu.Seconds()*100_000/float64(rows), "cpu-s/100k-rows")
		fmt.Fprintf(os.Stderr, "bench-adapter: %-9s batch %5d: %6.0f rows/s, adapter CPU %.2f s per 100k rows, %6.0f rows per CPU-second (%d rows in %v)\n",
			api, size, rate, cpu.Seconds()*100_000/float64(rows), perCPU, int64(rows)-first, elapsed.Round(time.Millisecond))
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
