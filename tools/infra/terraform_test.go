package infra

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	corev1 "k8s.io/api/core/v1"
)

const (
	schemaFile = "services/bigquery-adapter/internal/schema/schema.json"
	eventsFile = "services/bigquery-adapter/internal/schema/events.json"
)

func mustTerraform(t *testing.T) (*repo, *TFModule) {
	t.Helper()
	r := mustRepo(t)
	m, err := LoadTerraform(filepath.Join(r.root, "terraform"))
	if err != nil {
		t.Fatal(err)
	}
	return r, m
}

// `terraform fmt -check`: every file is already in HCL's canonical format (hclwrite.Format is what
// terraform fmt and tofu fmt apply).
func TestTerraformFormatting(t *testing.T) {
	_, m := mustTerraform(t)
	if len(m.Files) == 0 {
		t.Fatal("no terraform files")
	}
	for name, src := range m.Files {
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted (run terraform fmt -recursive terraform/)", name)
		}
	}
}

func TestTerraformStack(t *testing.T) {
	_, m := mustTerraform(t)
	want := []string{
		"google_artifact_registry_repository", "google_artifact_registry_repository_iam_member",
		"google_bigquery_dataset", "google_bigquery_table", "google_bigquery_table_iam_member",
		"google_compute_network", "google_compute_router", "google_compute_router_nat", "google_compute_subnetwork",
		"google_container_cluster", "google_project_service", "google_redis_instance",
		"google_service_account", "google_service_account_iam_member",
	}
	types := m.ResourceTypes()
	for _, w := range want {
		if !slices.Contains(types, w) {
			t.Errorf("no %s resource", w)
		}
	}

	tfb, ok := m.Block("terraform")
	if !ok {
		t.Fatal("no terraform block")
	}
	c, _, diags := tfb.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "required_providers"}}})
	if diags.HasErrors() || len(c.Blocks) != 1 {
		t.Fatalf("terraform block needs one required_providers: %v", diags)
	}
	attrs, _ := c.Blocks[0].Body.JustAttributes()
	g, ok := attrs["google"]
	if !ok {
		t.Fatal("required_providers has no google")
	}
	gv, diags := g.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if src := gv.GetAttr("source").AsString(); src != "hashicorp/google" {
		t.Errorf("google source %q", src)
	}
	if v := gv.GetAttr("version").AsString(); !regexp.MustCompile(`^(=\s*)?\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("google provider version %q: pin an exact version", v)
	}

	clusters := m.Resources("google_container_cluster")
	if len(clusters) != 1 {
		t.Fatalf("%d clusters", len(clusters))
	}
	for name, b := range clusters {
		attrs := attributes(t, b.Body, "enable_autopilot", "network", "subnetwork", "deletion_protection")
		if v := literal(t, attrs["enable_autopilot"]); v != cty.True {
			t.Errorf("cluster %s: enable_autopilot = %#v, want true", name, v)
		}
		for _, blk := range []string{"private_cluster_config", "ip_allocation_policy", "release_channel", "cluster_autoscaling"} {
			if !hasBlock(b.Body, blk) {
				t.Errorf("cluster %s: no %s block", name, blk)
			}
		}
	}

	// Least privilege: no primitive or admin roles anywhere, and project-wide grants only for the
	// node role.
	for _, b := range m.Blocks {
		if b.Type != "resource" || !strings.Contains(b.Labels[0], "iam_") {
			continue
		}
		attrs := attributes(t, b.Body, "role")
		role := literal(t, attrs["role"]).AsString()
		if role == "roles/owner" || role == "roles/editor" || strings.HasSuffix(role, ".admin") || strings.HasSuffix(role, "Admin") {
			t.Errorf("%s.%s grants %s", b.Labels[0], b.Labels[1], role)
		}
		if strings.HasPrefix(b.Labels[0], "google_project_iam") && role != "roles/container.defaultNodeServiceAccount" {
			t.Errorf("%s.%s grants %s on the whole project", b.Labels[0], b.Labels[1], role)
		}
	}
}

// The variables and outputs a reader needs are documented.
func TestTerraformVariablesAndOutputs(t *testing.T) {
	_, m := mustTerraform(t)
	n := map[string]int{}
	for _, b := range m.Blocks {
		if b.Type != "variable" && b.Type != "output" {
			continue
		}
		n[b.Type]++
		need := []string{"description"}
		if b.Type == "variable" {
			need = append(need, "type")
		}
		c, _, _ := b.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "description"}, {Name: "type"}}})
		for _, a := range need {
			if _, ok := c.Attributes[a]; !ok {
				t.Errorf("%s %s has no %s", b.Type, b.Labels[0], a)
			}
		}
	}
	if n["variable"] == 0 || n["output"] == 0 {
		t.Errorf("variables %d, outputs %d", n["variable"], n["output"])
	}
	for _, out := range []string{"cluster_name", "get_credentials", "image_repository", "redis_host", "adapter_service_account"} {
		if _, ok := m.Block("output", out); !ok {
			t.Errorf("no output %s", out)
		}
	}
}

// Each BigQuery table's schema is the adapter's schema file for it: messages (schema.json)
// partitioned by DATE(published_at) and clustered by topic and client_id, events (events.json)
// partitioned by DATE(occurred_at) and clustered by client_id.
func TestBigQueryTableUsesAdapterSchema(t *testing.T) {
	r, m := mustTerraform(t)
	type want struct {
		file, partition, clustering string
		columns                     map[string]string // column -> type it must have
	}
	wants := map[string]want{
		"messages": {schemaFile, "published_at", `["topic","client_id"]`, map[string]string{"published_at": "TIMESTAMP", "topic": "STRING", "client_id": "STRING"}},
		"events":   {eventsFile, "occurred_at", `["client_id"]`, map[string]string{"occurred_at": "TIMESTAMP", "client_id": "STRING"}},
	}
	tables := m.Resources("google_bigquery_table")
	if len(tables) != len(wants) {
		t.Fatalf("%d BigQuery tables, want %d", len(tables), len(wants))
	}
	vars, err := m.VariableDefaults()
	if err != nil {
		t.Fatal(err)
	}
	vars["project_id"] = cty.StringVal("test-project")
	ctx, err := m.EvalContext(vars)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range tables {
		w, ok := wants[name]
		if !ok {
			t.Fatalf("unexpected table %s", name)
		}
		raw, err := os.ReadFile(filepath.Join(r.root, w.file))
		if err != nil {
			t.Fatal(err)
		}
		var fileSchema []map[string]any
		if err := json.Unmarshal(raw, &fileSchema); err != nil {
			t.Fatalf("%s: %v", w.file, err)
		}
		checkSchemaFields(t, w.file, fileSchema, "")
		byName := map[string]map[string]any{}
		for _, f := range fileSchema {
			byName[f["name"].(string)] = f
		}
		for col, typ := range w.columns {
			if f := byName[col]; f == nil || f["type"] != typ {
				t.Errorf("%s: %s must be a %s (partitioning or clustering column)", w.file, col, typ)
			}
		}
		if f := byName[w.partition]; f == nil || f["mode"] != "REQUIRED" {
			t.Errorf("%s: %s must be REQUIRED (the partitioning column)", w.file, w.partition)
		}
		attrs := attributes(t, b.Body, "schema", "clustering")
		sv, diags := attrs["schema"].Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("table %s schema: %v", name, diags)
		}
		var tfSchema []map[string]any
		if err := json.Unmarshal([]byte(sv.AsString()), &tfSchema); err != nil {
			t.Fatalf("table %s schema is not JSON: %v", name, err)
		}
		if !reflect.DeepEqual(tfSchema, fileSchema) {
			t.Errorf("table %s schema differs from %s", name, w.file)
		}
		cv, diags := attrs["clustering"].Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if js, _ := ctyjson.Marshal(cv, cv.Type()); string(js) != w.clustering {
			t.Errorf("table %s clustering %s, want %s", name, js, w.clustering)
		}
		var tp *hcl.Block
		c, _, _ := b.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "time_partitioning"}}})
		if len(c.Blocks) == 1 {
			tp = c.Blocks[0]
		}
		if tp == nil {
			t.Fatalf("table %s is not time-partitioned", name)
		}
		pa := attributes(t, tp.Body, "type", "field")
		if typ, field := literal(t, pa["type"]).AsString(), literal(t, pa["field"]).AsString(); typ != "DAY" || field != w.partition {
			t.Errorf("table %s partitioned by %s(%s), want DAY(%s)", name, typ, field, w.partition)
		}
	}
}

var (
	bqTypes = []string{"STRING", "BYTES", "INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC", "BOOLEAN", "BOOL",
		"TIMESTAMP", "DATE", "TIME", "DATETIME", "GEOGRAPHY", "JSON", "RECORD", "STRUCT", "RANGE", "INTERVAL"}
	bqModes = []string{"NULLABLE", "REQUIRED", "REPEATED"}
)

func checkSchemaFields(t *testing.T, schemaFile string, fields []map[string]any, path string) {
	t.Helper()
	seen := map[string]bool{}
	for _, f := range fields {
		name, _ := f["name"].(string)
		typ, _ := f["type"].(string)
		mode, _ := f["mode"].(string)
		if name == "" || seen[name] {
			t.Errorf("%s: field %q is empty or repeated", schemaFile, path+name)
		}
		seen[name] = true
		if !slices.Contains(bqTypes, typ) {
			t.Errorf("%s: field %s has type %q", schemaFile, path+name, typ)
		}
		if mode != "" && !slices.Contains(bqModes, mode) {
			t.Errorf("%s: field %s has mode %q", schemaFile, path+name, mode)
		}
		for k := range f {
			if !slices.Contains([]string{"name", "type", "mode", "description", "fields", "policyTags", "maxLength", "precision", "scale", "defaultValueExpression", "collation", "roundingMode", "rangeElementType"}, k) {
				t.Errorf("%s: field %s has unknown key %q", schemaFile, path+name, k)
			}
		}
		sub, hasSub := f["fields"].([]any)
		if (typ == "RECORD" || typ == "STRUCT") != hasSub {
			t.Errorf("%s: field %s: RECORD fields need sub-fields, others none", schemaFile, path+name)
		}
		if hasSub {
			var subs []map[string]any
			for _, s := range sub {
				m, _ := s.(map[string]any)
				subs = append(subs, m)
			}
			checkSchemaFields(t, schemaFile, subs, path+name+".")
		}
	}
}

// Names that terraform and the manifests must agree on.
func TestTerraformMatchesManifests(t *testing.T) {
	r, m := mustTerraform(t)
	vars, err := m.VariableDefaults()
	if err != nil {
		t.Fatal(err)
	}
	str := func(name string) string {
		v, ok := vars[name]
		if !ok || v.Type() != cty.String {
			t.Fatalf("variable %s has no string default", name)
		}
		return v.AsString()
	}
	gke := r.overlays["gke"]
	if ns := str("k8s_namespace"); ns != namespace {
		t.Errorf("k8s_namespace %q, manifests use %q", ns, namespace)
	}
	d := gke.Deployments()["bigquery-adapter"]
	if d == nil || d.Spec.Template.Spec.ServiceAccountName != str("adapter_k8s_service_account") {
		t.Errorf("adapter_k8s_service_account %q is not the adapter Deployment's ServiceAccount", str("adapter_k8s_service_account"))
	}
	sa, _ := gke.Find("ServiceAccount", "bigquery-adapter").(*corev1.ServiceAccount)
	if sa == nil || !strings.HasPrefix(sa.Annotations["iam.gke.io/gcp-service-account"], str("name")+"-adapter@") {
		t.Errorf("the gke adapter ServiceAccount is not bound to %s-adapter@…", str("name"))
	}
	settings, err := os.ReadFile(filepath.Join(r.root, "deploy/overlays/gke/settings.env"))
	if err != nil {
		t.Fatal(err)
	}
	// settings.env holds terraform's outputs (scripts/infra-gke-settings.sh); the committed one its
	// defaults. Either way Memorystore's address must lie in the range the NetworkPolicy allows.
	env := map[string]string{}
	for _, line := range strings.Split(string(settings), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	_, cidr, err := net.ParseCIDR(env["REDIS_CIDR"])
	if err != nil {
		t.Errorf("settings.env REDIS_CIDR: %v", err)
	} else if ip := net.ParseIP(env["REDIS_HOST"]); ip == nil || !cidr.Contains(ip) {
		t.Errorf("settings.env REDIS_HOST %q is not in REDIS_CIDR %s", env["REDIS_HOST"], cidr)
	}
	if _, def, err := net.ParseCIDR(str("redis_reserved_ip_range")); err != nil || len(def.IP.To4()) != net.IPv4len {
		t.Errorf("redis_reserved_ip_range default %q is not an IPv4 range", str("redis_reserved_ip_range"))
	}

	wi := m.Resources("google_service_account_iam_member")
	found := false
	for _, b := range wi {
		attrs := attributes(t, b.Body, "role", "member")
		if literal(t, attrs["role"]).AsString() != "roles/iam.workloadIdentityUser" {
			continue
		}
		vars["project_id"] = cty.StringVal("p")
		ctx, err := m.EvalContext(vars)
		if err != nil {
			t.Fatal(err)
		}
		v, diags := attrs["member"].Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if got, want := v.AsString(), "serviceAccount:p.svc.id.goog["+namespace+"/"+sa.Name+"]"; got != want {
			t.Errorf("Workload Identity member %q, want %q", got, want)
		}
		found = true
	}
	if !found {
		t.Error("no roles/iam.workloadIdentityUser binding")
	}

	test, ok := m.Files[filepath.Join("tests", "stack.tftest.hcl")]
	if !ok || !bytes.Contains(test, []byte(`mock_provider "google"`)) || !bytes.Contains(test, []byte("command = plan")) {
		t.Error("terraform/tests/stack.tftest.hcl must plan the stack against mock_provider \"google\"")
	}
}

func attributes(t *testing.T, body hcl.Body, names ...string) map[string]*hcl.Attribute {
	t.Helper()
	var s hcl.BodySchema
	for _, n := range names {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: n})
	}
	c, _, diags := body.PartialContent(&s)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, n := range names {
		if _, ok := c.Attributes[n]; !ok {
			t.Fatalf("%s: no attribute %s", body.MissingItemRange().String(), n)
		}
	}
	return c.Attributes
}

func literal(t *testing.T, a *hcl.Attribute) cty.Value {
	t.Helper()
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s: %s is not a literal: %v", a.Range.String(), a.Name, diags)
	}
	return v
}

func hasBlock(body hcl.Body, typ string) bool {
	c, _, _ := body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: typ}}})
	return len(c.Blocks) > 0
}
