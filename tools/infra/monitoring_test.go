package infra

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated rules resources from the rules file")

// The GMP Rules and the PrometheusRule carry exactly the rules file's groups: the same text, and
// the same parsed groups.
func TestRulesResourcesAreTheRulesFile(t *testing.T) {
	root, err := RepoRoot() // not mustRepo: the overlays need these files to render
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(root, RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	want, err := RuleGroups(filepath.Join(root, RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range RulesResources {
		t.Run(rr.Kind, func(t *testing.T) {
			text, err := rr.Render(rules)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(root, rr.Path)
			if *update {
				if err := os.WriteFile(path, text, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, text) {
				t.Errorf("%s differs from %s: run go test ./tools/infra -run TestRulesResourcesAreTheRulesFile -update", rr.Path, RulesFile)
			}
			groups, err := RuleGroups(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(groups, want) {
				t.Errorf("%s: spec.groups are not the groups of %s", rr.Path, RulesFile)
			}
		})
	}
}

// README.md lists every alert with its runbook line, as the rules file has it.
func TestReadmeListsEveryAlert(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	groups, err := RuleGroups(filepath.Join(root, RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range groups {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rules {
			rule, _ := r.(map[string]any)
			alert, _ := rule["alert"].(string)
			ann, _ := rule["annotations"].(map[string]any)
			runbook, _ := ann["runbook"].(string)
			line := "| `" + alert + "` |"
			if alert == "" || runbook == "" || !strings.Contains(string(readme), line) ||
				!strings.Contains(string(readme), strings.ReplaceAll(runbook, "|", `\|`)+" |") {
				t.Errorf("README.md (Monitoring, Alerts) lacks the row of %q with its runbook %q", alert, runbook)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no alerts in the rules file")
	}
}
