package bq

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	bqv2 "google.golang.org/api/bigquery/v2"

	"github.com/mcloudtt/mcloudtt/pkg/iotcore"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Table is one of the adapter's two tables.
type Table int

// The tables.
const (
	Messages Table = iota // exported messages (schema.json)
	Events                // presence: connects and disconnects (events.json)
	numTables
)

func (t Table) String() string {
	if t == Events {
		return "events"
	}
	return "messages"
}

// Row is one row of a table, made from an exported message or a presence event. It points into
// the stream entry it was decoded from, which must not change while the row is in use.
type Row struct {
	Table Table
	ID    string         // message_id or event_id: the deduplication key
	Key   wire.MessageID // the same id, binary
	At    time.Time      // published_at or occurred_at: the partitioning column
	Size  int            // about the bytes the row takes in a request
	// NoJSON leaves payload_json empty even for a JSON payload (BigQuery refused the value).
	NoJSON bool

	msg    *wire.Message
	ev     *wire.Presence
	device string // device_id: the Cloud IoT Core device the publisher's client id names

	ingested time.Time
	text     bool // the payload is valid UTF-8: payload_text
	json     bool // ... and a JSON text that may go to payload_json
}

// BigQuery's TIMESTAMP range.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// ErrInvalidRow is wrapped by NewRow and NewEventRow for what BigQuery would refuse.
var ErrInvalidRow = errors.New("bq: cannot be a row")

// maxJSONDepth is BigQuery's nesting limit for a JSON value.
const maxJSONDepth = 500

// MaxRowBytes bounds a row: an append (and an insertAll request) takes 10 MB, so a larger row
// could never be written; such a message goes to the dead letters. (A payload of text or JSON
// is in a row up to three times: payload, payload_text, payload_json.)
const MaxRowBytes = 9 << 20

// NewRow makes the messages row of m. The payload always goes to payload (BYTES); when it is
// valid UTF-8 also to payload_text; when it is moreover a JSON text (any JSON value) whose
// content type, if the publisher gave one, names a JSON type, also to payload_json. A v5
// payload format indicator of 0 says "unspecified bytes", which the standard makes the same as
// no indicator, so it does not keep a JSON payload out of payload_json. NewRow fails
// (ErrInvalidRow) for what BigQuery refuses: no id, no topic, a time outside TIMESTAMP's range,
// a string column that is not UTF-8.
func NewRow(m *wire.Message, ingested time.Time) (Row, error) {
	if m.ID.IsZero() {
		return Row{}, fmt.Errorf("%w: no message id", ErrInvalidRow)
	}
	if m.Topic == "" {
		return Row{}, fmt.Errorf("%w: empty topic", ErrInvalidRow)
	}
	pub, err := timestamp(m.Created, "published")
	if err != nil {
		return Row{}, err
	}
	if !utf8.ValidString(m.Topic) || !utf8.ValidString(m.ClientID) || !utf8.ValidString(m.Username) ||
		!utf8.ValidString(m.Origin) || !utf8.ValidString(m.ContentType) {
		return Row{}, fmt.Errorf("%w: a string column is not UTF-8", ErrInvalidRow)
	}
	size := 120 + 36 + len(m.Origin) + len(m.ClientID) + len(m.Username) + len(m.Topic) +
		len(m.ContentType) + len(m.Payload)
	for i, p := range m.UserProperties {
		if !utf8.ValidString(p.Key) || !utf8.ValidString(p.Value) {
			return Row{}, fmt.Errorf("%w: user property %d is not UTF-8", ErrInvalidRow, i)
		}
		size += 8 + len(p.Key) + len(p.Value)
	}
	// The device id comes from the client id (a substring of it: no allocation, no new field in
	// the envelope); the broker's compatible mode has checked it at CONNECT.
	device, _ := iotcore.DeviceOf(m.ClientID)
	r := Row{Table: Messages, ID: m.ID.String(), Key: m.ID, At: pub, msg: m, ingested: ingested.UTC(), device: device}
	if utf8.Valid(m.Payload) {
		r.text = true
		size += len(m.Payload)
		if jsonContentType(m.ContentType) && isJSON(m.Payload) {
			r.json = true
			size += len(m.Payload)
		}
	}
	r.Size = size
	if size > MaxRowBytes {
		return Row{}, fmt.Errorf("%w: a row of about %d bytes (payload %d bytes) exceeds %d", ErrInvalidRow, size, len(m.Payload), MaxRowBytes)
	}
	return r, nil
}

// jsonContentType reports whether a v5 content type allows a JSON payload: none, or a JSON media
// type (application/json, text/json, anything +json), parameters allowed.
func jsonContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// isJSON reports whether b (valid UTF-8) is one JSON text BigQuery's JSON type takes: RFC 8259
// syntax and at most maxJSONDepth levels of nesting.
func isJSON(b []byte) bool {
	if !json.Valid(b) {
		return false
	}
	depth, in, esc := 0, false, false
	for _, c := range b {
		switch {
		case in:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				in = false
			}
		case c == '"':
			in = true
		case c == '{' || c == '[':
			if depth++; depth > maxJSONDepth {
				return false
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return true
}

// NewEventRow makes the events row of a presence event. It fails (ErrInvalidRow) for what
// BigQuery refuses: no id, no client id, an unknown kind, a time outside TIMESTAMP's range, a
// string that is not UTF-8.
func NewEventRow(p *wire.Presence, ingested time.Time) (Row, error) {
	if p.ID.IsZero() || p.Connection.IsZero() {
		return Row{}, fmt.Errorf("%w: no event or connection id", ErrInvalidRow)
	}
	if p.ClientID == "" {
		return Row{}, fmt.Errorf("%w: no client id", ErrInvalidRow)
	}
	if p.Kind != wire.PresenceConnect && p.Kind != wire.PresenceDisconnect {
		return Row{}, fmt.Errorf("%w: %s", ErrInvalidRow, p.Kind)
	}
	at, err := timestamp(p.Time, "event")
	if err != nil {
		return Row{}, err
	}
	if _, err := timestamp(p.ConnectedAt, "connected"); err != nil {
		return Row{}, err
	}
	for _, s := range []string{p.ClientID, p.Username, p.Replica, p.RemoteAddr, p.Cause} {
		if !utf8.ValidString(s) {
			return Row{}, fmt.Errorf("%w: a string column is not UTF-8", ErrInvalidRow)
		}
	}
	size := 200 + len(p.ClientID) + len(p.Username) + len(p.Replica) + len(p.RemoteAddr) + len(p.Cause)
	return Row{Table: Events, ID: p.ID.String(), Key: p.ID, At: at, ev: p, ingested: ingested.UTC(), Size: size}, nil
}

func timestamp(ns int64, what string) (time.Time, error) {
	t := time.Unix(0, ns).UTC()
	if ns <= 0 || t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, fmt.Errorf("%w: %s time %d ns out of range", ErrInvalidRow, what, ns)
	}
	return t, nil
}

// Protocol names a protocol level as the events table writes it.
func Protocol(level byte) string {
	switch level {
	case 3:
		return "3.1"
	case 4:
		return "3.1.1"
	case 5:
		return "5.0"
	}
	return ""
}

// HasJSON reports whether the row fills payload_json.
func (r *Row) HasJSON() bool { return r.json && !r.NoJSON }

const tsLayout = "2006-01-02T15:04:05.000000Z"

// JSON returns the row as insertAll takes it.
func (r *Row) JSON() map[string]bqv2.JsonValue {
	if r.Table == Events {
		p := r.ev
		return map[string]bqv2.JsonValue{
			"event_id":        r.ID,
			"event":           p.Kind.String(),
			"connection_id":   p.Connection.String(),
			"client_id":       p.ClientID,
			"username":        nullable(p.Username),
			"broker_id":       nullable(p.Replica),
			"remote_addr":     nullable(p.RemoteAddr),
			"protocol":        nullable(Protocol(p.Protocol)),
			"keep_alive":      int(p.KeepAlive),
			"clean_start":     p.CleanStart,
			"session_present": p.SessionPresent,
			"cause":           nullable(p.Cause),
			"connected_at":    time.Unix(0, p.ConnectedAt).UTC().Format(tsLayout),
			"occurred_at":     r.At.Format(tsLayout),
			"ingested_at":     r.ingested.Format(tsLayout),
		}
	}
	m := r.msg
	props := make([]any, len(m.UserProperties))
	for i, p := range m.UserProperties {
		props[i] = map[string]any{"key": p.Key, "value": p.Value}
	}
	j := map[string]bqv2.JsonValue{
		"message_id":      r.ID,
		"broker_id":       nullable(m.Origin),
		"client_id":       m.ClientID,
		"device_id":       nullable(r.device),
		"username":        nullable(m.Username),
		"topic":           m.Topic,
		"qos":             int(m.QoS),
		"retain":          m.Retain,
		"payload":         base64.StdEncoding.EncodeToString(m.Payload),
		"payload_text":    nil,
		"payload_json":    nil,
		"content_type":    nullable(m.ContentType),
		"user_properties": props,
		"published_at":    r.At.Format(tsLayout),
		"ingested_at":     r.ingested.Format(tsLayout),
	}
	if r.text {
		j["payload_text"] = string(m.Payload)
	}
	if r.HasJSON() {
		j["payload_json"] = string(m.Payload) // JSON text, which BigQuery parses
	}
	return j
}

func nullable(s string) bqv2.JsonValue {
	if s == "" {
		return nil
	}
	return s
}
