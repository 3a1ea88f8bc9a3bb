// Package bq is the adapter's side of BigQuery: creating or checking the two tables (messages
// and presence events), turning exported messages and events into rows, writing them with the
// Storage Write API (committed streams, appends at explicit offsets: write.go) or with the legacy
// tabledata.insertAll (insert id = row id), asking which row ids a table already holds, and
// sorting errors into retryable, uncertain and permanent.
//
// insertAll is called once per attempt with no retry underneath. The client library's Inserter
// retries 5xx and network errors on its own; when such a first attempt was applied but its answer
// lost, the retry writes the rows again wherever BigQuery's best-effort insertId deduplication
// does not catch it (always in the local emulator, which ignores insert ids), and the adapter
// would not even learn that the outcome was uncertain. So the adapter calls the same REST method
// through the generated service the library itself uses (google.golang.org/api/bigquery/v2),
// built with the same options, and does its own retries, checking before each retry of an
// uncertain attempt which rows already arrived (Existing).
package bq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"cloud.google.com/go/bigquery"
	storage "cloud.google.com/go/bigquery/storage/apiv1"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	bqv2 "google.golang.org/api/bigquery/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/schema"
)

// API names how rows are written.
type API string

// The write APIs.
const (
	// StorageWrite: the BigQuery Storage Write API (gRPC), committed streams with offsets.
	StorageWrite API = "storage"
	// InsertAll: the legacy tabledata.insertAll (REST, JSON).
	InsertAll API = "insertall"
)

// Options configure a Client.
type Options struct {
	// Project of the tables and of the query jobs; empty: detected from the environment.
	Project, Dataset string
	// Table (messages) and EventsTable (presence) are the two tables' ids.
	Table, EventsTable string
	// Location of a dataset created by Setup ("" = BigQuery's default).
	Location string
	// Endpoint, when set, is the REST endpoint (the emulator) and authentication is off;
	// otherwise Application Default Credentials are used. GRPCEndpoint is the Storage Write
	// API's host:port then (plain text, no authentication).
	Endpoint, GRPCEndpoint string
	// CreateTable lets Setup create a missing dataset and tables.
	CreateTable bool
	// API is how rows are written (default StorageWrite).
	API API
}

// Client writes rows to the two tables.
type Client struct {
	o      Options
	ctx    context.Context // lives until Close: the Write API's connections
	cancel context.CancelFunc
	bq     *bigquery.Client
	svc    *bqv2.Service
	mw     *managedwriter.Client        // nil unless API is StorageWrite
	raw    *storage.BigQueryWriteClient // FinalizeWriteStream, which mw does not offer
	enc    [numTables]*Encoder
}

// New makes the clients. It does not contact BigQuery.
func New(ctx context.Context, o Options) (*Client, error) {
	if o.EventsTable == "" {
		o.EventsTable = "events"
	}
	if o.API == "" {
		o.API = StorageWrite
	}
	opts := []option.ClientOption{option.WithScopes(bigquery.Scope)}
	if o.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(o.Endpoint), option.WithoutAuthentication())
	}
	project := o.Project
	if project == "" {
		project = bigquery.DetectProjectID // from the credentials or the metadata server (GKE)
	}
	c := &Client{}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var err error
	if c.bq, err = bigquery.NewClient(ctx, project, opts...); err != nil {
		c.cancel()
		return nil, fmt.Errorf("bigquery client: %w", err)
	}
	o.Project = c.bq.Project()
	c.o = o
	if c.svc, err = bqv2.NewService(ctx, opts...); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("bigquery service: %w", err)
	}
	for t := Table(0); t < numTables; t++ {
		if c.enc[t], err = NewEncoder(t); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	if o.API == StorageWrite {
		var mwOpts []option.ClientOption
		if o.Endpoint != "" {
			if o.GRPCEndpoint == "" {
				_ = c.Close()
				return nil, errors.New("bq: the Storage Write API needs the emulator's gRPC endpoint too")
			}
			mwOpts = append(mwOpts, option.WithEndpoint(o.GRPCEndpoint), option.WithoutAuthentication(),
				option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
		}
		if c.mw, err = managedwriter.NewClient(c.ctx, o.Project, mwOpts...); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("bigquery write client: %w", err)
		}
		if c.raw, err = storage.NewBigQueryWriteClient(c.ctx, mwOpts...); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("bigquery write client: %w", err)
		}
	}
	return c, nil
}

// Close releases the clients and the Write API's connections.
func (c *Client) Close() error {
	c.cancel()
	if c.mw != nil {
		_ = c.mw.Close()
	}
	if c.raw != nil {
		_ = c.raw.Close()
	}
	return c.bq.Close()
}

// API returns how rows are written.
func (c *Client) API() API { return c.o.API }

func (c *Client) tableName(t Table) string {
	if t == Events {
		return c.o.EventsTable
	}
	return c.o.Table
}

// TableID returns table t as `project.dataset.table`, for queries.
func (c *Client) TableID(t Table) string {
	return fmt.Sprintf("`%s.%s.%s`", c.o.Project, c.o.Dataset, c.tableName(t))
}

// tableSpec is how Setup creates a table.
type tableSpec struct {
	schema    bigquery.Schema
	partition string   // the TIMESTAMP column whose date partitions the table
	cluster   []string // clustering columns
	about     string
}

func specOf(t Table) tableSpec {
	if t == Events {
		return tableSpec{schema.Events(), "occurred_at", []string{"client_id"},
			"MQTT device presence: every CONNECT and disconnect with its cause; schema: services/bigquery-adapter/internal/schema/events.json."}
	}
	return tableSpec{schema.Schema(), "published_at", []string{"topic", "client_id"},
		"Exported MQTT messages; schema: services/bigquery-adapter/internal/schema/schema.json."}
}

// Setup makes sure both tables exist with their schema files' schemas: it creates the dataset
// and the tables (messages partitioned by DATE(published_at) and clustered by topic and client
// id; events partitioned by DATE(occurred_at) and clustered by client id) when they are missing
// and CreateTable is set, and otherwise compares an existing table's schema (ErrSchema).
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
	for t := Table(0); t < numTables; t++ {
		if err := c.setupTable(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) setupTable(ctx context.Context, t Table) error {
	name := c.tableName(t)
	table := c.bq.Dataset(c.o.Dataset).Table(name)
	spec := specOf(t)
	md, err := table.Metadata(ctx)
	if err != nil {
		if !isNotFound(err) || !c.o.CreateTable {
			return fmt.Errorf("table %s: %w", name, err)
		}
		err = table.Create(ctx, &bigquery.TableMetadata{
			Schema:           spec.schema,
			TimePartitioning: &bigquery.TimePartitioning{Type: bigquery.DayPartitioningType, Field: spec.partition},
			Clustering:       &bigquery.Clustering{Fields: spec.cluster},
			Description:      spec.about,
		})
		if err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("creating table %s: %w", name, err)
		}
		if md, err = table.Metadata(ctx); err != nil {
			return fmt.Errorf("table %s: %w", name, err)
		}
	}
	if err := schema.Check(spec.schema, md.Schema); err != nil {
		return fmt.Errorf("%w: table %s: %w", ErrSchema, name, err)
	}
	return nil
}

// ErrSchema: the table exists with another schema.
var ErrSchema = errors.New("bq: table schema does not match")

// Ping reads the messages table's metadata: BigQuery is reachable and the table is there.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.bq.Dataset(c.o.Dataset).Table(c.o.Table).Metadata(ctx)
	return err
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

// Insert sends rows (all of one table) in one insertAll request, without retrying. nil means
// BigQuery stored every row. An *InsertError lists refused rows; any other error is sorted by
// Classify.
func (c *Client) Insert(ctx context.Context, rows []*Row) error {
	if len(rows) == 0 {
		return nil
	}
	req := &bqv2.TableDataInsertAllRequest{Rows: make([]*bqv2.TableDataInsertAllRequestRows, len(rows))}
	for i, r := range rows {
		req.Rows[i] = &bqv2.TableDataInsertAllRequestRows{InsertId: r.ID, Json: r.JSON()}
	}
	res, err := c.svc.Tabledata.InsertAll(c.o.Project, c.o.Dataset, c.tableName(rows[0].Table), req).Context(ctx).Do()
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

// Existing returns which of ids table t holds, looking at the rows published (events: that
// occurred) between from and to (the batch's own window, which BigQuery reads from the
// partitions concerned only).
//
// The query lists the window's message ids and the adapter intersects them with ids itself.
// Asking for the ids directly is what BigQuery would do best, but the emulator evaluates
// IN UNNEST(@ids), a literal IN list and a JOIN on UNNEST row by row against every value (about a
// minute for 2,000 ids against 40,000 rows), while a time window takes milliseconds; a batch's
// window holds about as many rows as the batches written alongside it.
func (c *Client) Existing(ctx context.Context, t Table, ids []string, from, to time.Time) (map[string]bool, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	spec := specOf(t)
	q := c.bq.Query("SELECT " + spec.schema[0].Name + " FROM " + c.TableID(t) + " WHERE " + spec.partition + " BETWEEN @from AND @to")
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
