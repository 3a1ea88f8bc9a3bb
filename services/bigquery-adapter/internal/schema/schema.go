// Package schema holds the schemas of the adapter's two tables: schema.json (exported messages)
// and events.json (device presence: connects and disconnects), read by the adapter (embedded
// here) and by terraform (terraform/main.tf reads the same files), so the two cannot drift apart.
// The Storage Write API's protobuf descriptor is derived from the same schemas (package bq).
package schema

import (
	_ "embed"
	"fmt"
	"strings"

	"cloud.google.com/go/bigquery"
)

//go:embed schema.json
var schemaJSON []byte

//go:embed events.json
var eventsJSON []byte

// JSON returns schema.json (the messages table) as it is.
func JSON() []byte { return schemaJSON }

// EventsJSON returns events.json (the events table) as it is.
func EventsJSON() []byte { return eventsJSON }

// Schema returns the messages table's schema.
func Schema() bigquery.Schema { return parse("schema.json", schemaJSON) }

// Events returns the events table's schema.
func Events() bigquery.Schema { return parse("events.json", eventsJSON) }

func parse(name string, raw []byte) bigquery.Schema {
	s, err := bigquery.SchemaFromJSON(raw)
	if err != nil {
		panic("schema: " + name + " does not parse: " + err.Error()) // caught by the package's tests
	}
	return s
}

// Check reports how got (an existing table's schema) differs from want: a missing, extra or
// renamed column, or a different type, mode or nesting. Descriptions are not compared.
func Check(want, got bigquery.Schema) error {
	var diffs []string
	compare("", want, got, &diffs)
	if len(diffs) > 0 {
		return fmt.Errorf("schema: table differs from schema.json: %s", strings.Join(diffs, "; "))
	}
	return nil
}

func compare(prefix string, want, got bigquery.Schema, diffs *[]string) {
	byName := make(map[string]*bigquery.FieldSchema, len(got))
	for _, f := range got {
		byName[strings.ToLower(f.Name)] = f
	}
	seen := make(map[string]bool, len(want))
	for _, w := range want {
		name := prefix + w.Name
		seen[strings.ToLower(w.Name)] = true
		g := byName[strings.ToLower(w.Name)]
		switch {
		case g == nil:
			*diffs = append(*diffs, "column "+name+" missing")
			continue
		case g.Type != w.Type:
			*diffs = append(*diffs, fmt.Sprintf("column %s is %s, want %s", name, g.Type, w.Type))
		case g.Repeated != w.Repeated || g.Required != w.Required:
			*diffs = append(*diffs, fmt.Sprintf("column %s is %s, want %s", name, mode(g), mode(w)))
		}
		if w.Type == bigquery.RecordFieldType && g.Type == w.Type {
			compare(name+".", w.Schema, g.Schema, diffs)
		}
	}
	for _, g := range got {
		if !seen[strings.ToLower(g.Name)] {
			*diffs = append(*diffs, "unexpected column "+prefix+g.Name)
		}
	}
}

func mode(f *bigquery.FieldSchema) string {
	switch {
	case f.Repeated:
		return "REPEATED"
	case f.Required:
		return "REQUIRED"
	}
	return "NULLABLE"
}
