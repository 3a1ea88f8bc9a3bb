package bq

import (
	"context"
	"errors"
	"fmt"
	"io"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The Storage Write API side: committed write streams, appends at explicit offsets, and the
// errors sorted into what the adapter's exactly-once plans need to know (see package adapter).
//
// A committed stream makes rows visible as soon as an append is acknowledged. An append names the
// offset of its first row; BigQuery applies it only when the offset is the stream's current end
// (its row count), so an append sent twice, or by two replicas, lands once: the second answer is
// ALREADY_EXISTS. The client library's own retries are off (they are by default): the adapter
// retries at the same offset itself and must know when an outcome was uncertain.

// Stream is one committed write stream of a table, with its connection.
type Stream struct {
	c     *Client
	table Table
	ms    *managedwriter.ManagedStream
	buf   [][]byte
	arena []byte
}

// Append outcomes the adapter acts on. Any other error leaves the outcome unknown (the rows may
// or may not be in the table: send the same append again), except *RowErrors and ErrRefused.
var (
	// ErrAlreadyExists: the offset is below the stream's end: this append (or the same rows
	// sent by someone else) was applied before. Nothing was written now.
	ErrAlreadyExists = errors.New("bq: offset already exists in the stream")
	// ErrOutOfRange: the offset is beyond the stream's end. Nothing was written.
	ErrOutOfRange = errors.New("bq: offset beyond the end of the stream")
	// ErrFinalized: the stream takes no more rows. Nothing was written.
	ErrFinalized = errors.New("bq: write stream finalized")
	// ErrStreamNotFound: the stream does not exist (any more). Nothing was written.
	ErrStreamNotFound = errors.New("bq: write stream not found")
	// ErrRefused: BigQuery refused the append before writing anything (permissions, quota, a
	// missing table, a request it cannot parse): try again later.
	ErrRefused = errors.New("bq: append refused")
)

// RowErrors: BigQuery refused some rows of an append, and so wrote none of them.
type RowErrors struct {
	Rows map[int]string // index in the append -> reason
}

func (e *RowErrors) Error() string {
	for i, why := range e.Rows {
		return fmt.Sprintf("bq: %d rows refused (row %d: %s)", len(e.Rows), i, why)
	}
	return "bq: rows refused"
}

// NewStream creates a committed write stream on t and opens it.
func (c *Client) NewStream(ctx context.Context, t Table) (*Stream, error) {
	if c.mw == nil {
		return nil, errors.New("bq: the Storage Write API is not in use")
	}
	ws, err := c.mw.CreateWriteStream(ctx, &storagepb.CreateWriteStreamRequest{
		Parent:      managedwriter.TableParentFromParts(c.o.Project, c.o.Dataset, c.tableName(t)),
		WriteStream: &storagepb.WriteStream{Type: storagepb.WriteStream_COMMITTED},
	})
	if err != nil {
		return nil, fmt.Errorf("bq: creating a write stream on %s: %w", t, classifyAppend(err, nil))
	}
	return c.OpenStream(ctx, t, ws.GetName())
}

// OpenStream opens an existing write stream of t by name (one that another replica, or this
// one before a restart, created).
func (c *Client) OpenStream(ctx context.Context, t Table, name string) (*Stream, error) {
	if c.mw == nil {
		return nil, errors.New("bq: the Storage Write API is not in use")
	}
	// The library's own lookup of the stream hides the status code in its error: look first.
	if _, err := c.raw.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: name}); err != nil {
		return nil, fmt.Errorf("bq: looking up write stream %s: %w", name, classifyAppend(err, nil))
	}
	// The connection lives with the client's context, not the caller's: it outlives this call.
	ms, err := c.mw.NewManagedStream(c.ctx, managedwriter.WithStreamName(name),
		managedwriter.WithSchemaDescriptor(c.enc[t].Descriptor()))
	if err != nil {
		return nil, fmt.Errorf("bq: opening write stream %s: %w", name, classifyAppend(err, nil))
	}
	return &Stream{c: c, table: t, ms: ms}, nil
}

// Name returns the stream's name (projects/.../streams/...).
func (s *Stream) Name() string { return s.ms.StreamName() }

// Table returns the stream's table.
func (s *Stream) Table() Table { return s.table }

// Close closes the stream's connection; the stream itself stays as it is in BigQuery.
func (s *Stream) Close() { _ = s.ms.Close() }

// Append writes rows at offset, waiting for BigQuery's answer. nil: the rows are in the table.
// The other outcomes are ErrAlreadyExists, ErrOutOfRange, ErrFinalized, ErrStreamNotFound,
// ErrRefused and *RowErrors (nothing written), and anything else (outcome unknown).
func (s *Stream) Append(ctx context.Context, rows []*Row, offset int64) error {
	enc := s.c.enc[s.table]
	s.buf = s.buf[:0]
	need := 0
	for _, r := range rows {
		need += r.Size
	}
	if cap(s.arena) < need {
		s.arena = make([]byte, 0, need)
	}
	arena := s.arena[:0]
	for _, r := range rows {
		start := len(arena)
		arena = enc.Append(arena, r)
		s.buf = append(s.buf, arena[start:len(arena):len(arena)])
	}
	s.arena = arena[:0]
	res, err := s.ms.AppendRows(ctx, s.buf, managedwriter.WithOffset(offset))
	clear(s.buf)
	if err != nil {
		s.arena = nil // the library may still be sending from it
		return classifyAppend(err, nil)
	}
	resp, err := res.FullResponse(ctx)
	if err != nil {
		return classifyAppend(err, resp)
	}
	return nil
}

// Finalize finalizes the stream name: it takes no more rows. It returns the stream's row count.
func (c *Client) Finalize(ctx context.Context, name string) (int64, error) {
	if c.mw == nil {
		return 0, errors.New("bq: the Storage Write API is not in use")
	}
	res, err := c.raw.FinalizeWriteStream(ctx, &storagepb.FinalizeWriteStreamRequest{Name: name})
	if err != nil {
		return 0, classifyAppend(err, nil)
	}
	return res.GetRowCount(), nil
}

// classifyAppend maps an error of the Write API to the adapter's outcomes (see Append).
func classifyAppend(err error, resp *storagepb.AppendRowsResponse) error {
	if resp != nil && len(resp.GetRowErrors()) > 0 {
		re := &RowErrors{Rows: map[int]string{}}
		for _, x := range resp.GetRowErrors() {
			re.Rows[int(x.GetIndex())] = x.GetCode().String() + ": " + x.GetMessage()
		}
		return re
	}
	if errors.Is(err, io.EOF) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err // unknown outcome
	}
	var se storagepb.StorageError
	hasSE := false
	if ae, ok := apierror.FromError(err); ok {
		hasSE = ae.Details().ExtractProtoMessage(&se) == nil
	}
	if hasSE {
		switch se.GetCode() {
		case storagepb.StorageError_OFFSET_ALREADY_EXISTS:
			return fmt.Errorf("%w: %v", ErrAlreadyExists, err)
		case storagepb.StorageError_OFFSET_OUT_OF_RANGE:
			return fmt.Errorf("%w: %v", ErrOutOfRange, err)
		case storagepb.StorageError_STREAM_FINALIZED:
			return fmt.Errorf("%w: %v", ErrFinalized, err)
		case storagepb.StorageError_STREAM_NOT_FOUND, storagepb.StorageError_TABLE_NOT_FOUND:
			return fmt.Errorf("%w: %v", ErrStreamNotFound, err)
		}
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.AlreadyExists:
		return fmt.Errorf("%w: %v", ErrAlreadyExists, err)
	case codes.OutOfRange:
		return fmt.Errorf("%w: %v", ErrOutOfRange, err)
	case codes.NotFound:
		return fmt.Errorf("%w: %v", ErrStreamNotFound, err)
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted,
		codes.FailedPrecondition:
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return err
}
