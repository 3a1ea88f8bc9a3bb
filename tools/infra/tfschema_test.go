package infra

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every resource in terraform/ (and the provider block) fits the google provider's real schema, as
// extracted into the fixture from the pinned provider version: no unknown or read-only attribute,
// no missing required one, every block a block of the schema, nested as the schema says.
func TestTerraformMatchesProviderSchema(t *testing.T) {
	r, m := mustTerraform(t)
	s, err := LoadProviderSchema(filepath.Join(r.root, ProviderSchemaFile))
	if err != nil {
		t.Fatal(err)
	}
	versions, err := os.ReadFile(filepath.Join(r.root, "terraform", "versions.tf"))
	if err != nil {
		t.Fatal(err)
	}
	pin := regexp.MustCompile(`version\s*=\s*"=?\s*([0-9.]+)"`).FindSubmatch(versions)
	if pin == nil || string(pin[1]) != s.ProviderVersion {
		t.Fatalf("the schema fixture is from google provider %s, terraform/versions.tf pins %s: regenerate it (scripts/tf-schema-fixture.sh)", s.ProviderVersion, pin)
	}
	if !strings.Contains(s.Source, "terraform-provider-google") {
		t.Errorf("the fixture does not say where its provider came from: %q", s.Source)
	}
	for _, p := range s.ValidateResources(m) {
		t.Error(p)
	}
	// The fixture holds exactly the types in use, so it stays small and a removed resource takes
	// its schema with it.
	used := m.ResourceTypes()
	if got := sortedKeys(s.ResourceSchemas); strings.Join(got, ",") != strings.Join(used, ",") {
		t.Errorf("fixture types %v, terraform/ uses %v: regenerate the fixture", got, used)
	}
}

// The validator itself, on a small schema shaped like the google provider's: each kind of mistake
// is found, and a correct resource passes.
func TestProviderSchemaValidation(t *testing.T) {
	s := &ProviderSchema{ResourceSchemas: map[string]TFSchema{"google_redis_instance": {Block: TFSchemaBlock{
		Attributes: map[string]TFSchemaAttribute{
			"name":           {Required: true},
			"memory_size_gb": {Required: true},
			"auth_enabled":   {Optional: true},
			"redis_configs":  {Optional: true},
			"host":           {Computed: true},
			"tier":           {Optional: true, Computed: true},
		},
		BlockTypes: map[string]TFSchemaBlockType{
			"persistence_config": {NestingMode: "list", MaxItems: 1, Block: TFSchemaBlock{
				Attributes: map[string]TFSchemaAttribute{"persistence_mode": {Required: true}, "rdb_snapshot_period": {Optional: true}}}},
			"maintenance_policy": {NestingMode: "list", MaxItems: 1, Block: TFSchemaBlock{
				BlockTypes: map[string]TFSchemaBlockType{"weekly_maintenance_window": {NestingMode: "list", MinItems: 1,
					Block: TFSchemaBlock{Attributes: map[string]TFSchemaAttribute{"day": {Required: true}}}}}}},
			"timeouts": {NestingMode: "single", Block: TFSchemaBlock{Attributes: map[string]TFSchemaAttribute{"create": {Optional: true}}}},
		},
	}}}}
	check := func(src string) []string {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := LoadTerraform(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s.ValidateResources(m)
	}
	good := `resource "google_redis_instance" "r" {
  name           = "x"
  memory_size_gb = 1
  tier           = "STANDARD_HA"
  redis_configs  = { "maxmemory-policy" = "noeviction" }
  depends_on     = []
  persistence_config {
    persistence_mode = "RDB"
  }
  dynamic "maintenance_policy" {
    for_each = []
    content {
      weekly_maintenance_window {
        day = "MONDAY"
      }
    }
  }
  lifecycle {
    prevent_destroy = true
  }
}
`
	if p := check(good); len(p) != 0 {
		t.Fatalf("a correct resource: %v", p)
	}
	for _, c := range []struct {
		src, want string
	}{
		{strings.Replace(good, `tier           = "STANDARD_HA"`, `teir = "STANDARD_HA"`, 1), "unknown attribute teir"},
		{strings.Replace(good, `memory_size_gb = 1`, ``, 1), "missing required attribute memory_size_gb"},
		{strings.Replace(good, `tier           = "STANDARD_HA"`, `host = "10.0.0.1"`, 1), "host is read-only"},
		{strings.Replace(good, `persistence_mode = "RDB"`, `persistence_mode = "RDB"
    snapshot_period  = "ONE_HOUR"`, 1), "persistence_config (line 9): unknown attribute snapshot_period"},
		{strings.Replace(good, `persistence_mode = "RDB"`, ``, 1), "persistence_config: missing required attribute persistence_mode"},
		{strings.Replace(good, "  persistence_config {\n    persistence_mode = \"RDB\"\n  }", `  persistence_config = { persistence_mode = "RDB" }`, 1), "persistence_config is a block: write persistence_config { ... }"},
		{strings.Replace(good, `  redis_configs  = { "maxmemory-policy" = "noeviction" }`, "  redis_configs {\n  }", 1), "redis_configs is an attribute: write redis_configs = ..., not a block"},
		{strings.Replace(good, "  persistence_config {", "  persistence_config {\n    persistence_mode = \"RDB\"\n  }\n  persistence_config {", 1), "block persistence_config appears 2 times, at most 1 allowed"},
		{strings.Replace(good, "      weekly_maintenance_window {\n        day = \"MONDAY\"\n      }\n", "", 1), "maintenance_policy: missing required block weekly_maintenance_window"},
		{strings.Replace(good, "  lifecycle {", "  timeouts {\n  }\n  timeouts {\n  }\n  lifecycle {", 1), "block timeouts appears 2 times, at most 1 allowed"},
		{good + `resource "google_redis_cluster" "c" {}` + "\n", "the schema fixture has no google_redis_cluster"},
		{strings.Replace(good, "    persistence_mode = \"RDB\"\n  }", "    persistence_mode = \"RDB\"\n    nested {\n    }\n  }", 1), "unknown block nested"},
	} {
		p := check(c.src)
		if !strings.Contains(strings.Join(p, "\n"), c.want) {
			t.Errorf("want a problem %q, got %v", c.want, p)
		}
	}
}
