package infra

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
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
