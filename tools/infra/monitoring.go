package infra

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// RulesFile is the one Prometheus rules file, relative to the repository root.
const RulesFile = "deploy/monitoring/rules/mcloudtt.rules.yaml"

// RulesResource is a custom resource that carries RulesFile's groups as its spec.groups.
type RulesResource struct {
	Path       string // relative to the repository root
	APIVersion string
	Kind       string
}

// RulesResources are the copies of RulesFile: Google Managed Prometheus's Rules and
// prometheus-operator's PrometheusRule.
var RulesResources = []RulesResource{
	{Path: "deploy/components/google-managed-prometheus/rules.yaml", APIVersion: "monitoring.googleapis.com/v1", Kind: "Rules"},
	{Path: "deploy/components/prometheus-operator/prometheusrule.yaml", APIVersion: "monitoring.coreos.com/v1", Kind: "PrometheusRule"},
}

// Render is the resource's file made from the rules file's text: a header, the object's head, and
// the rules file's groups: block indented under spec, so both read line for line the same.
func (rr RulesResource) Render(rules []byte) ([]byte, error) {
	i := bytes.Index(rules, []byte("\ngroups:\n"))
	if i < 0 {
		return nil, fmt.Errorf("%s: no top-level groups: line", RulesFile)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated from %s by\n#   go test ./tools/infra -run TestRulesResourcesAreTheRulesFile -update\n", RulesFile)
	b.WriteString("# Edit that file, not this one: tools/infra fails when they differ.\n")
	fmt.Fprintf(&b, "apiVersion: %s\nkind: %s\nmetadata:\n  name: mcloudtt\nspec:\n", rr.APIVersion, rr.Kind)
	for _, line := range strings.SplitAfter(string(rules[i+1:]), "\n") {
		if strings.TrimSpace(line) == "" {
			b.WriteString(line)
			continue
		}
		b.WriteString("  " + line)
	}
	return []byte(b.String()), nil
}

// RuleGroups reads a YAML file and returns its groups: the top-level groups of a rules file, or
// spec.groups of a rules resource.
func RuleGroups(path string) ([]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	if spec, ok := doc["spec"].(map[string]any); ok {
		doc = spec
	}
	groups, ok := doc["groups"].([]any)
	if !ok || len(groups) == 0 {
		return nil, fmt.Errorf("%s: no rule groups", path)
	}
	return groups, nil
}
