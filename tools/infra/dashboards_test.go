package infra

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// DashboardsDir holds the Grafana dashboards, relative to the repository root.
const DashboardsDir = "deploy/monitoring/dashboards"

type dashDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *dashDatasource `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource *dashDatasource `json:"datasource"`
	} `json:"targets"`
}

type dashboard struct {
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      any             `json:"query"`
			Datasource *dashDatasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

// loadDashboards reads every dashboard in DashboardsDir, by file name.
func loadDashboards(t *testing.T, root string) map[string]*dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, DashboardsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s (%v)", DashboardsDir, err)
	}
	out := map[string]*dashboard{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := &dashboard{}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		if err := dec.Decode(d); err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

var dashVarRef = regexp.MustCompile(`\$(\{)?(\w+)`)

// The dashboards import into any Grafana with a Prometheus data source: a schema version, a unique
// uid, the data source a variable every panel, query and query variable uses, every variable a
// query names defined, panels on the 24-column grid; a dashboard with a pod variable (a replica's)
// selects that pod in every query.
func TestDashboardsAreImportable(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for name, d := range loadDashboards(t, root) {
		t.Run(name, func(t *testing.T) {
			if d.SchemaVersion < 36 || d.UID == "" || d.Title == "" {
				t.Errorf("schemaVersion %d, uid %q, title %q: want schemaVersion >= 36 and a uid and title", d.SchemaVersion, d.UID, d.Title)
			}
			if other, dup := uids[d.UID]; dup {
				t.Errorf("uid %s also in %s", d.UID, other)
			}
			uids[d.UID] = name
			vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
			for _, v := range d.Templating.List {
				vars[v.Name] = true
				switch {
				case v.Name == "datasource" && (v.Type != "datasource" || v.Query != "prometheus"):
					t.Errorf("variable datasource: type %s query %v, want a prometheus datasource variable", v.Type, v.Query)
				case v.Type == "query" && !usesDatasourceVar(v.Datasource):
					t.Errorf("variable %s does not query ${datasource}", v.Name)
				}
			}
			if !vars["datasource"] {
				t.Fatal("no datasource variable")
			}
			checkPanels(t, d, vars)
		})
	}
}

func usesDatasourceVar(ds *dashDatasource) bool {
	return ds != nil && ds.Type == "prometheus" && ds.UID == "${datasource}"
}

func checkPanels(t *testing.T, d *dashboard, vars map[string]bool) {
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W <= 0 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v off the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if !usesDatasourceVar(p.Datasource) || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d queries; want ${datasource} and a query", p.Title, p.Datasource, len(p.Targets))
		}
		for _, q := range p.Targets {
			queries++
			if !usesDatasourceVar(q.Datasource) || strings.TrimSpace(q.Expr) == "" {
				t.Errorf("panel %q query %s: datasource %+v, expr %q", p.Title, q.RefID, q.Datasource, q.Expr)
			}
			for _, m := range dashVarRef.FindAllStringSubmatch(q.Expr, -1) {
				if !vars[m[2]] {
					t.Errorf("panel %q query %s names undefined variable $%s", p.Title, q.RefID, m[2])
				}
			}
			if vars["pod"] && !strings.Contains(q.Expr, `pod="$pod"`) {
				t.Errorf("panel %q query %s does not select pod=\"$pod\": %s", p.Title, q.RefID, q.Expr)
			}
		}
	}
	if queries == 0 {
		t.Error("no queries")
	}
}
