// Package bq is the adapter's side of BigQuery: creating or checking the table, inserting rows
// with tabledata.insertAll (insert id = message id), asking which message ids a table already
// holds, and sorting errors into retryable, uncertain and permanent.
//
// Rows are inserted with one insertAll call per attempt and no retry underneath. The client
// library's Inserter retries 5xx and network errors on its own; when such a first attempt was
// applied but its answer lost, the retry writes the rows again wherever BigQuery's best-effort
// insertId deduplication does not catch it (always in the local emulator, which ignores insert
// ids), and the adapter would not even learn that the outcome was uncertain. So the adapter calls
// the same REST method through the generated service the library itself uses
// (google.golang.org/api/bigquery/v2), built with the same options, and does its own retries,
// checking before each retry of an uncertain attempt which rows already arrived (Existing).
package bq

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/bigquery"
	bqv2 "google.golang.org/api/bigquery/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/schema"
)

// Options configure a Client.
type Options struct {
	// Project of the table and of the query jobs; empty: detected from the environment.
	Project, Dataset, Table string
	// Location of a dataset created by Setup ("" = BigQuery's default).
	Location string
	// Endpoint, when set, is the REST endpoint (the emulator) and authentication is off;
	// otherwise Application Default Credentials are used.
	Endpoint string
	// CreateTable lets Setup create a missing dataset and table.
	CreateTable bool
}

// Client writes rows to one table.
type Client struct {
	o     Options
	bq    *bigquery.Client
	svc   *bqv2.Service
	table *bigquery.Table
}

// New makes the clients. It does not contact BigQuery.
func New(ctx context.Context, o Options) (*Client, error) {
	opts := []option.ClientOption{option.WithScopes(bigquery.Scope)}
	if o.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(o.Endpoint), option.WithoutAuthentication())
	}
	project := o.Project
	if project == "" {
		project = bigquery.DetectProjectID // from the credentials or the metadata server (GKE)
	}
	c, err := bigquery.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, fmt.Errorf("bigquery client: %w", err)
	}
	o.Project = c.Project()
	svc, err := bqv2.NewService(ctx, opts...)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("bigquery service: %w", err)
	}
	return &Client{o: o, bq: c, svc: svc, table: c.Dataset(o.Dataset).Table(o.Table)}, nil
}

// Close releases the clients.
func (c *Client) Close() error { return c.bq.Close() }

// TableID returns the table as `project.dataset.table`, for queries.
func (c *Client) TableID() string {
	return fmt.Sprintf("`%s.%s.%s`", c.o.Project, c.o.Dataset, c.o.Table)
}

// Setup makes sure the table exists with schema.json's schema: it creates the dataset and the
// table (partitioned by DATE(published_at), clustered by topic) when they are missing and
// CreateTable is set, and otherwise compares the existing table's schema (ErrSchema).
func (c *Client) Setup(ctx context.Context) error {
	ds := c.bq.Dataset(c.o.Dataset)
	if _, err := ds.Metadata(ctx); err != nil {
		if !isNotFound(err) || !c.o.CreateTable {
			return fmt.Errorf("dataset %s: %w", c.o.Dataset, err)
		}
		if err := ds.Create(ctx, &bigquery.DatasetMetadata{Location: c.o.Location}); err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("creating dataset %s: %w", c.o.Dataset, err)
		}
	}
	want := schema.Schema()
	md, err := c.table.Metadata(ctx)
	if err != nil {
		if !isNotFound(err) || !c.o.CreateTable {
			return fmt.Errorf("table %s: %w", c.o.Table, err)
		}
		err = c.table.Create(ctx, &bigquery.TableMetadata{
			Schema:           want,
			TimePartitioning: &bigquery.TimePartitioning{Type: bigquery.DayPartitioningType, Field: "published_at"},
			Clustering:       &bigquery.Clustering{Fields: []string{"topic"}},
			Description:      "Exported MQTT messages; schema: services/bigquery-adapter/internal/schema/schema.json.",
		})
		if err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("creating table %s: %w", c.o.Table, err)
		}
		if md, err = c.table.Metadata(ctx); err != nil {
			return fmt.Errorf("table %s: %w", c.o.Table, err)
		}
	}
	if err := schema.Check(want, md.Schema); err != nil {
		return fmt.Errorf("%w: %w", ErrSchema, err)
	}
	return nil
}

// ErrSchema: the table exists with another schema.
var ErrSchema = errors.New("bq: table schema does not match")

// Ping reads the table's metadata: BigQuery is reachable and the table is there.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.table.Metadata(ctx)
	return err
}

// Row is one message ready for insertAll.
type Row struct {
	ID        string // message id: insertId and message_id
	Published time.Time
	JSON      map[string]bqv2.JsonValue
	Size      int // approximate bytes of the row in the request
}

// BigQuery's TIMESTAMP range.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// ErrInvalidRow is wrapped by NewRow for a message BigQuery would refuse.
var ErrInvalidRow = errors.New("bq: message cannot be a row")

const tsLayout = "2006-01-02T15:04:05.000000Z"

// NewRow turns an exported message into a row. payload is sent as BYTES (any bytes) and, when
// it is valid UTF-8, also as payload_text. It fails (ErrInvalidRow) for what BigQuery refuses:
// no id, no topic, a time outside TIMESTAMP's range.
func NewRow(m *bus.Message, ingested time.Time) (Row, error) {
	if m.ID.IsZero() {
		return Row{}, fmt.Errorf("%w: no message id", ErrInvalidRow)
	}
	if m.Topic == "" {
		return Row{}, fmt.Errorf("%w: empty topic", ErrInvalidRow)
	}
	pub := time.Unix(0, m.Created).UTC()
	if m.Created <= 0 || pub.Before(minTime) || pub.After(maxTime) {
		return Row{}, fmt.Errorf("%w: published time %d ns out of range", ErrInvalidRow, m.Created)
	}
	if !utf8.ValidString(m.Topic) || !utf8.ValidString(m.ClientID) || !utf8.ValidString(m.Username) ||
		!utf8.ValidString(m.Origin) || !utf8.ValidString(m.ContentType) {
		return Row{}, fmt.Errorf("%w: a string column is not UTF-8", ErrInvalidRow)
	}
	id := m.ID.String()
	props := make([]any, len(m.UserProperties))
	size := 200 + len(id) + len(m.Origin) + len(m.ClientID) + len(m.Username) + 2*len(m.Topic) +
		len(m.ContentType) + base64.StdEncoding.EncodedLen(len(m.Payload))
	for i, p := range m.UserProperties {
		if !utf8.ValidString(p.Key) || !utf8.ValidString(p.Value) {
			return Row{}, fmt.Errorf("%w: user property %d is not UTF-8", ErrInvalidRow, i)
		}
		props[i] = map[string]any{"key": p.Key, "value": p.Value}
		size += 30 + len(p.Key) + len(p.Value)
	}
	j := map[string]bqv2.JsonValue{
		"message_id":      id,
		"broker_id":       nullable(m.Origin),
		"client_id":       m.ClientID,
		"username":        nullable(m.Username),
		"topic":           m.Topic,
		"qos":             int(m.QoS),
		"retain":          m.Retain,
		"payload":         base64.StdEncoding.EncodeToString(m.Payload),
		"payload_text":    nil,
		"content_type":    nullable(m.ContentType),
		"user_properties": props,
		"published_at":    pub.Format(tsLayout),
		"ingested_at":     ingested.UTC().Format(tsLayout),
	}
	if utf8.Valid(m.Payload) {
		j["payload_text"] = string(m.Payload)
		size += len(m.Payload)
	}
	return Row{ID: id, Published: pub, JSON: j, Size: size}, nil
}

func nullable(s string) bqv2.JsonValue {
	if s == "" {
		return nil
	}
	return s
}

// RowError is one row BigQuery refused for good.
type RowError struct {
	Index  int // in the rows given to Insert
	Reason string
}

// InsertError: BigQuery answered insertAll with per-row errors; nothing of the request was
// written (skipInvalidRows is off). Invalid lists the rows refused for good; the others were
// only "stopped" with them and can be sent again.
type InsertError struct{ Invalid []RowError }

func (e *InsertError) Error() string {
	return fmt.Sprintf("bq: insertAll refused %d rows (first: row %d: %s)", len(e.Invalid), e.Invalid[0].Index, e.Invalid[0].Reason)
}

// Insert sends rows in one insertAll request, without retrying. nil means BigQuery stored
// every row. An *InsertError lists refused rows; any other error is sorted by Classify.
func (c *Client) Insert(ctx context.Context, rows []Row) error {
	req := &bqv2.TableDataInsertAllRequest{Rows: make([]*bqv2.TableDataInsertAllRequestRows, len(rows))}
	for i := range rows {
		req.Rows[i] = &bqv2.TableDataInsertAllRequestRows{InsertId: rows[i].ID, Json: rows[i].JSON}
	}
	res, err := c.svc.Tabledata.InsertAll(c.o.Project, c.o.Dataset, c.o.Table, req).Context(ctx).Do()
	if err != nil {
		return err
	}
	if len(res.InsertErrors) == 0 {
		return nil
	}
	ie := &InsertError{}
	for _, e := range res.InsertErrors {
		reason, stopped := "", true
		for _, x := range e.Errors {
			if x.Reason != "stopped" {
				stopped = false
				reason = x.Reason + ": " + x.Message
				break
			}
		}
		if !stopped {
			ie.Invalid = append(ie.Invalid, RowError{Index: int(e.Index), Reason: reason})
		}
	}
	if len(ie.Invalid) == 0 {
		return fmt.Errorf("bq: insertAll stopped every row without naming a bad one: %w", ErrUncertain)
	}
	return ie
}

// ErrUncertain marks an error after which BigQuery may or may not hold the rows.
var ErrUncertain = errors.New("bq: outcome unknown")

// Existing returns which of ids the table holds, looking at the rows published between from
// and to (the batch's own window, which BigQuery reads from the partitions concerned only).
//
// The query lists the window's message ids and the adapter intersects them with ids itself.
// Asking for the ids directly is what BigQuery would do best, but the emulator evaluates
// IN UNNEST(@ids), a literal IN list and a JOIN on UNNEST row by row against every value (about a
// minute for 2,000 ids against 40,000 rows), while a time window takes milliseconds; a batch's
// window holds about as many rows as the batches written alongside it.
func (c *Client) Existing(ctx context.Context, ids []string, from, to time.Time) (map[string]bool, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	q := c.bq.Query("SELECT message_id FROM " + c.TableID() + " WHERE published_at BETWEEN @from AND @to")
	q.Parameters = []bigquery.QueryParameter{
		{Name: "from", Value: from.Add(-time.Millisecond)},
		{Name: "to", Value: to.Add(time.Millisecond)},
	}
	it, err := q.Read(ctx)
	if err != nil {
		return nil, err
	}
	found := make(map[string]bool)
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return found, nil
		}
		if err != nil {
			return nil, err
		}
		if s, ok := row[0].(string); ok && want[s] {
			found[s] = true
		}
	}
}

// Class sorts an error of Insert or Existing.
type Class int

const (
	// Retry: try again after a backoff; BigQuery did not apply the request.
	Retry Class = iota
	// RetryUncertain: try again, but BigQuery may have applied the request (5xx, a timeout, a
	// lost connection): check which rows arrived first.
	RetryUncertain
	// Invalid: the request itself is refused (400): sending it again cannot help.
	Invalid
)

// Classify sorts err: 400 is Invalid; 401, 403, 404 and 429 are Retry (the request was refused
// before anything was written; an operator may fix permissions or the table meanwhile);
// everything else, 5xx and network errors included, is RetryUncertain.
func Classify(err error) Class {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		switch {
		case ge.Code == http.StatusBadRequest:
			return Invalid
		case ge.Code == http.StatusTooManyRequests, ge.Code == http.StatusUnauthorized,
			ge.Code == http.StatusForbidden, ge.Code == http.StatusNotFound:
			return Retry
		}
		return RetryUncertain
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return Retry // never connected: nothing was sent
	}
	return RetryUncertain
}

// StatusCode returns the HTTP status of err, or 0 when it has none (a network error).
func StatusCode(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func isNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

func isAlreadyExists(err error) bool { return StatusCode(err) == http.StatusConflict }
