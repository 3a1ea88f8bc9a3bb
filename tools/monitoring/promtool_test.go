package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// promtool returns the promtool scripts/deps.sh infra builds (pinned in tools/infra/pins/prometheus).
func promtool(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("MCLOUDTT_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "mcloudtt")
	}
	bin := filepath.Join(cache, "bin", "promtool")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run scripts/deps.sh infra", bin)
	}
	return bin
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// promtool check rules: the file loads as Prometheus loads it (expressions, durations, label and
// annotation templates), and every alert has a severity and a runbook.
func TestPromtoolCheckRules(t *testing.T) {
	root := repoRoot(t)
	t.Log(runPromtool(t, "check", "rules", filepath.Join(root, RulesFile)))
	groups := readRules(t, filepath.Join(root, RulesFile))
	n := 0
	for _, g := range groups["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			rule := r.(map[string]any)
			labels, _ := rule["labels"].(map[string]any)
			ann, _ := rule["annotations"].(map[string]any)
			runbook, _ := ann["runbook"].(string)
			if labels["severity"] == nil || !strings.Contains(runbook, "Check:") || !strings.Contains(runbook, "Do:") {
				t.Errorf("%v: want a severity label and a runbook annotation saying Check: ... Do: ...", rule["alert"])
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}
}

// promtool test rules: mcloudtt.rules.test.yaml makes every alert fire and not fire. It runs on a
// copy of the rules without annotations (promtool compares an alert's annotations in full; the
// runbooks' text is not under test), and every alert must have a firing case there.
func TestPromtoolTestRules(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	rules := readRules(t, filepath.Join(root, RulesFile))
	alerts := map[string]bool{}
	for _, g := range rules["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			delete(r.(map[string]any), "annotations")
			alerts[r.(map[string]any)["alert"].(string)] = true
		}
	}
	writeYAML(t, filepath.Join(dir, filepath.Base(RulesFile)), rules)
	tests := readRules(t, filepath.Join(root, RulesTestFile))
	writeYAML(t, filepath.Join(dir, filepath.Base(RulesTestFile)), tests)
	fires := map[string]bool{}
	for _, tg := range tests["tests"].([]any) {
		for _, at := range tg.(map[string]any)["alert_rule_test"].([]any) {
			if exp, _ := at.(map[string]any)["exp_alerts"].([]any); len(exp) > 0 {
				fires[at.(map[string]any)["alertname"].(string)] = true
			}
		}
	}
	for _, a := range Sorted(alerts) {
		if !fires[a] {
			t.Errorf("%s: no test case in %s where it fires", a, RulesTestFile)
		}
	}
	t.Log(runPromtool(t, "test", "rules", filepath.Join(dir, filepath.Base(RulesTestFile))))
}

func readRules(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}
