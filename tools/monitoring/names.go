package monitoring

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// Paths of what the checks read, relative to the repository root.
const (
	RulesFile     = "deploy/monitoring/rules/mcloudtt.rules.yaml"
	RulesTestFile = "deploy/monitoring/rules/mcloudtt.rules.test.yaml"
	DashboardsDir = "deploy/monitoring/dashboards"
)

var promql = parser.NewParser(parser.Options{})

// RepoRoot is the nearest directory at or above the working directory that holds go.work.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root not found: no go.work above the working directory")
		}
		dir = parent
	}
}

// MetricNames returns the metric names the PromQL expression selects: each vector selector's name
// (or its __name__="..." matcher), as the exposition format spells it, so a histogram's series
// keep their _bucket, _sum and _count suffixes.
func MetricNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name != "" {
			names = append(names, name)
		}
		return nil
	})
	if len(names) == 0 {
		return nil, fmt.Errorf("%q selects no metric by name", expr)
	}
	return names, nil
}

// RuleExprs returns each rule's expression from a rules file, by alert (or record) name, after
// rulefmt parses and validates the file (as Prometheus loads it).
func RuleExprs(path string) (map[string]string, error) {
	rgs, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := map[string]string{}
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			out[r.Alert+r.Record] = r.Expr
		}
	}
	return out, nil
}

// grafanaVar is a Grafana variable in a query: $name, ${name} or ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)(:\w+)?\}?`)

// labelValues is a query variable's label_values(<selector>, <label>).
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*\w+\s*\)\s*$`)

// Substitute replaces Grafana's variables with what Grafana puts there: a duration for the
// interval variables, a label value for the others.
func Substitute(q string) string {
	return grafanaVar.ReplaceAllStringFunc(q, func(v string) string {
		switch name := grafanaVar.FindStringSubmatch(v)[1]; name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		default:
			return "x"
		}
	})
}

// DashboardQueries returns every PromQL query of the dashboards in dir (panel targets and query
// variables, label_values reduced to its selector), variables substituted, keyed by
// "<file>: <panel or variable>".
func DashboardQueries(dir string) (map[string][]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no dashboards in %s (%v)", dir, err)
	}
	out := map[string][]string{}
	for _, f := range files {
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Type  string `json:"type"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		base := filepath.Base(f)
		for _, p := range d.Panels {
			for _, t := range p.Targets {
				out[base+": "+p.Title] = append(out[base+": "+p.Title], Substitute(t.Expr))
			}
		}
		for _, v := range d.Templating.List {
			q, _ := v.Query.(map[string]any)
			if s, ok := q["query"].(string); ok && v.Type == "query" {
				if m := labelValues.FindStringSubmatch(s); m != nil {
					s = m[1]
				}
				out[base+": variable "+v.Name] = append(out[base+": variable "+v.Name], Substitute(s))
			}
		}
	}
	return out, nil
}

// Sorted returns the set's members in order.
func Sorted(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ExposedNames returns the sample names of a text-format /metrics body (histogram series with
// their suffixes, as they are exposed).
func ExposedNames(body string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}
