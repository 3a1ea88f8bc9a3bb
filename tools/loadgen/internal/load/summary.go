package load

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/procfs"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/stats"
)

// Summary is the one-line JSON printed last. Field names follow ../shared/mqttload's
// where they mean the same, so existing jq lines keep working.
type Summary struct {
	Tool     string `json:"tool"`
	Label    string `json:"label,omitempty"`
	Mode     string `json:"mode"`
	Addr     string `json:"addr"`
	Proto    int    `json:"proto,omitempty"` // MQTT protocol level
	Topology string `json:"topology,omitempty"`
	Pubs     int    `json:"pubs,omitempty"`
	Subs     int    `json:"subs,omitempty"`
	N        int    `json:"msgs_per_pub,omitempty"`
	Size     int    `json:"size,omitempty"`
	QoS      int    `json:"qos"`     // effective delivery QoS: min(pub, granted sub)
	PubQoS   int    `json:"pub_qos"` // of PUBLISH
	SubQoS   int    `json:"sub_qos"` // granted in SUBACK (lowest over subscribers)
	Inflight int    `json:"inflight,omitempty"`
	// Window is the inflight window actually used (v5: capped by Receive Maximum).
	Window int     `json:"window,omitempty"`
	Rate   float64 `json:"rate,omitempty"` // requested, msgs/s in total

	Sent       int64   `json:"sent,omitempty"`
	Acked      int64   `json:"acked,omitempty"`
	Expected   int64   `json:"expected,omitempty"`
	Received   int64   `json:"received,omitempty"`
	Lost       int64   `json:"lost"`
	Dup        int64   `json:"dup"`
	Reordered  int64   `json:"reordered"`
	Unexpected int64   `json:"unexpected,omitempty"` // deliveries with a bad payload or from the wrong publisher
	PubSecs    float64 `json:"pub_s,omitempty"`      // first PUBLISH to the last publisher's end (QoS>0: last ack)
	PubRate    float64 `json:"pub_rate,omitempty"`
	DelivSecs  float64 `json:"deliv_s,omitempty"`    // first to last delivery
	DelivRate  float64 `json:"deliv_rate,omitempty"` // received / deliv_s
	// DelivRateStart is received over first PUBLISH to last delivery: mqttload's deliv_rate.
	DelivRateStart float64 `json:"deliv_rate_start,omitempty"`
	P50us          float64 `json:"p50_us,omitempty"`
	P90us          float64 `json:"p90_us,omitempty"`
	P99us          float64 `json:"p99_us,omitempty"`
	P999us         float64 `json:"p999_us,omitempty"`
	Maxus          float64 `json:"max_us,omitempty"`
	Meanus         float64 `json:"mean_us,omitempty"`

	Conns        int     `json:"conns,omitempty"` // connections established
	ConnFail     int     `json:"conn_fail"`
	ConnSecs     float64 `json:"conn_s,omitempty"`
	ConnRate     float64 `json:"conn_rate,omitempty"`
	ConnackP50us float64 `json:"connack_p50_us,omitempty"`
	ConnackP99us float64 `json:"connack_p99_us,omitempty"`

	// -mode storm: clients that had to reconnect, seconds from the kill until the last was back,
	// per-client percentiles, refusing CONNACKs, other failed attempts (dial, handshake, timeout),
	// clients never back, all attempts, and reconnections that found their session.
	StormClients  int     `json:"storm_clients,omitempty"`
	StormSecs     float64 `json:"storm_s,omitempty"`
	StormP50ms    float64 `json:"storm_p50_ms,omitempty"`
	StormP99ms    float64 `json:"storm_p99_ms,omitempty"`
	StormRefused  int     `json:"storm_refused"`
	StormErrors   int     `json:"storm_errors"`
	StormFailed   int     `json:"storm_failed"`
	StormAttempts int     `json:"storm_attempts,omitempty"`
	StormPresent  int     `json:"storm_session_present"`

	BrokerPID   int     `json:"broker_pid,omitempty"`
	RSSBeforeKB int64   `json:"broker_rss_before_kb,omitempty"`
	RSSAfterKB  int64   `json:"broker_rss_after_kb,omitempty"`
	HWMKB       int64   `json:"broker_hwm_kb,omitempty"`
	PeakReset   bool    `json:"broker_peak_reset,omitempty"` // broker_hwm_kb is this run's peak
	RSSPerConnB float64 `json:"broker_rss_per_conn_b,omitempty"`
	BrokerCPU   float64 `json:"broker_cpu_s,omitempty"`
	DelivPerCPU float64 `json:"deliv_per_cpu_s,omitempty"`
	ToolCPU     float64 `json:"tool_cpu_s,omitempty"`
	OtherCPU    float64 `json:"other_cpu_s"` // host busy CPU used by neither broker nor tool: noise
	StealCPU    float64 `json:"steal_s"`
	Load1       float64 `json:"loadavg1"`
	ElapsedSecs float64 `json:"elapsed_s"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	TimedOut    bool    `json:"timed_out"`
	OK          bool    `json:"ok"` // no errors, no timeout (loss alone does not clear it)
}

// measure brackets a phase of the run with /proc snapshots of the broker, the tool
// and the host.
type measure struct {
	pid          int
	b0, b1       procfs.Process
	bErr         error
	t0, t1       procfs.Process
	h0, h1       procfs.Host
	hostOK, self bool
}

func startMeasure(pid int) *measure {
	m := &measure{pid: pid}
	if pid > 0 {
		m.b0, m.bErr = procfs.Read(pid)
	}
	var err1, err2 error
	m.t0, err1 = procfs.Read(os.Getpid())
	m.h0, err2 = procfs.ReadHost()
	m.self, m.hostOK = err1 == nil, err2 == nil
	return m
}

func (m *measure) stop() {
	if m.pid > 0 && m.bErr == nil {
		m.b1, m.bErr = procfs.Read(m.pid)
	}
	var err1, err2 error
	m.t1, err1 = procfs.Read(os.Getpid())
	m.h1, err2 = procfs.ReadHost()
	m.self = m.self && err1 == nil
	m.hostOK = m.hostOK && err2 == nil
}

// fill copies the measurements into s. rssBefore, if not nil, replaces the broker RSS
// taken at the start of the measured phase.
func (m *measure) fill(s *Summary, errs *errorLog) {
	broker := 0.0
	if m.pid > 0 {
		if m.bErr != nil {
			errs.add(fmt.Errorf("broker /proc: %w", m.bErr))
		} else {
			s.BrokerPID = m.pid
			s.RSSAfterKB, s.HWMKB = m.b1.RSSKB, m.b1.HWMKB
			if s.RSSBeforeKB == 0 {
				s.RSSBeforeKB = m.b0.RSSKB
			}
			broker = m.b1.CPU - m.b0.CPU
			s.BrokerCPU = round(broker, 3)
		}
	}
	if m.self {
		s.ToolCPU = round(m.t1.CPU-m.t0.CPU, 3)
	}
	if m.hostOK {
		s.OtherCPU = round((m.h1.Busy-m.h0.Busy)-s.ToolCPU-broker, 3)
		s.StealCPU = round(m.h1.Steal-m.h0.Steal, 3)
	}
}

func latencyInto(s *Summary, h *stats.Histogram) {
	us := func(ns int64) float64 { return round(float64(ns)/1e3, 1) }
	s.P50us, s.P90us, s.P99us = us(h.Quantile(0.5)), us(h.Quantile(0.9)), us(h.Quantile(0.99))
	s.P999us, s.Maxus, s.Meanus = us(h.Quantile(0.999)), us(h.Max()), round(h.Mean()/1e3, 1)
}

func round(v float64, digits int) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', digits, 64), 64)
	return f
}

func loadavg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// report prints the human-readable lines (unless quiet) and then the JSON line.
func report(w io.Writer, s *Summary, quiet bool) {
	if !quiet {
		for _, l := range humanLines(s) {
			fmt.Fprintln(w, l)
		}
	}
	b, _ := json.Marshal(s)
	fmt.Fprintln(w, string(b))
}

func humanLines(s *Summary) []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	switch s.Mode {
	case "conns":
		add("connected %d (%d failed) in %.2fs = %.0f conn/s; CONNACK p50 %.0fµs p99 %.0fµs",
			s.Conns, s.ConnFail, s.ConnSecs, s.ConnRate, s.ConnackP50us, s.ConnackP99us)
		if s.BrokerPID > 0 {
			add("broker rss %d -> %d KiB (peak %d KiB) = %.0f B/conn; broker cpu %.2fs",
				s.RSSBeforeKB, s.RSSAfterKB, s.HWMKB, s.RSSPerConnB, s.BrokerCPU)
		}
	default:
		add("%s %s: %d pubs -> %d subs, %d msgs/pub, %d B, qos pub %d sub %d, window %d, rate %g/s",
			s.Mode, s.Topology, s.Pubs, s.Subs, s.N, s.Size, s.PubQoS, s.SubQoS, s.Window, s.Rate)
		add("connected %d (%d failed) in %.2fs", s.Conns, s.ConnFail, s.ConnSecs)
		add("published %d in %.3fs = %.0f msg/s (acked %d)", s.Sent, s.PubSecs, s.PubRate, s.Acked)
		add("delivered %d/%d in %.3fs = %.0f msg/s (%.0f msg/s from first publish); lost %d dup %d reordered %d unexpected %d",
			s.Received, s.Expected, s.DelivSecs, s.DelivRate, s.DelivRateStart, s.Lost, s.Dup, s.Reordered, s.Unexpected)
		add("latency µs: p50 %.0f p90 %.0f p99 %.0f p99.9 %.0f max %.0f mean %.0f",
			s.P50us, s.P90us, s.P99us, s.P999us, s.Maxus, s.Meanus)
		if s.BrokerPID > 0 {
			add("broker: cpu %.2fs = %.0f deliveries/cpu-s; rss %d -> %d KiB, peak %d KiB",
				s.BrokerCPU, s.DelivPerCPU, s.RSSBeforeKB, s.RSSAfterKB, s.HWMKB)
		}
	}
	add("tool cpu %.2fs, other cpu %.2fs, steal %.2fs, elapsed %.2fs", s.ToolCPU, s.OtherCPU, s.StealCPU, s.ElapsedSecs)
	if s.Errors > 0 || s.TimedOut {
		add("FAILED: %d errors (first: %s), timed out %v", s.Errors, s.FirstError, s.TimedOut)
	}
	return out
}
