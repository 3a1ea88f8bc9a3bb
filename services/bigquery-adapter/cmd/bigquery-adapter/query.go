package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// runQuery is `bigquery-adapter query [-project P] [-endpoint URL] [-file F] SQL|NAME`: it runs
// one query (SQL, or the name of a query in the file, docs/queries.sql) and prints the rows as a
// table. The project and endpoint default to ADAPTER_BIGQUERY_PROJECT and
// ADAPTER_BIGQUERY_ENDPOINT (no endpoint: BigQuery itself, with Application Default Credentials).
func runQuery(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	project := fs.String("project", os.Getenv("ADAPTER_BIGQUERY_PROJECT"), "Google Cloud project (default $ADAPTER_BIGQUERY_PROJECT)")
	endpoint := fs.String("endpoint", os.Getenv("ADAPTER_BIGQUERY_ENDPOINT"), "REST endpoint of an emulator (default $ADAPTER_BIGQUERY_ENDPOINT)")
	file := fs.String("file", "docs/queries.sql", "file of named queries")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *project == "" {
		fmt.Fprintln(stderr, "usage: bigquery-adapter query [-project P] [-endpoint URL] [-file F] 'SQL' | NAME")
		return 2
	}
	sql := fs.Arg(0)
	if isName(sql) {
		text, err := os.ReadFile(*file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		q, ok := namedQueries(string(text))[sql]
		if !ok {
			fmt.Fprintf(stderr, "no query named %s in %s\n", sql, *file)
			return 1
		}
		sql = q
	}
	rows, cols, err := query(context.Background(), *project, *endpoint, sql)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = cell(v)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
	fmt.Fprintf(stderr, "(%d rows)\n", len(rows))
	return 0
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func isName(s string) bool { return nameRE.MatchString(s) }

// namedQueries splits a file of queries, each starting at a "-- name: <name>" line.
func namedQueries(text string) map[string]string {
	out := map[string]string{}
	name := ""
	var body []string
	flush := func() {
		if name != "" {
			out[name] = strings.TrimSpace(strings.Join(body, "\n"))
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "-- name:"); ok {
			flush()
			name, body = strings.TrimSpace(n), nil
			continue
		}
		if name != "" && !strings.HasPrefix(strings.TrimSpace(line), "--") {
			body = append(body, line)
		}
	}
	flush()
	return out
}

func query(ctx context.Context, project, endpoint, sql string) ([][]bigquery.Value, []string, error) {
	var opts []option.ClientOption
	if endpoint != "" {
		opts = append(opts, option.WithEndpoint(endpoint), option.WithoutAuthentication())
	}
	c, err := bigquery.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	it, err := c.Query(strings.TrimSuffix(strings.TrimSpace(sql), ";")).Read(ctx)
	if err != nil {
		return nil, nil, err
	}
	var rows [][]bigquery.Value
	for {
		var r []bigquery.Value
		err := it.Next(&r)
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, r)
	}
	var cols []string
	for _, f := range it.Schema {
		cols = append(cols, f.Name)
	}
	return rows, cols, nil
}

func cell(v bigquery.Value) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05.000000")
	case []byte:
		return fmt.Sprintf("%x", x)
	default:
		return fmt.Sprint(x)
	}
}
