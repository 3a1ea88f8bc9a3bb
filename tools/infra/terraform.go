package infra

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// TFBlock is a top-level terraform block: resource "type" "name", variable "name", output, ...
type TFBlock struct {
	Type   string
	Labels []string
	Body   hcl.Body
	File   string
}

// TFModule is the parsed root module: its top-level blocks and the attributes of its locals blocks.
type TFModule struct {
	Dir    string
	Files  map[string][]byte // .tf and .tftest.hcl sources by path relative to Dir
	Blocks []TFBlock
	Locals map[string]*hcl.Attribute
}

var tfTopLevel = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "terraform"}, {Type: "provider", LabelNames: []string{"name"}},
	{Type: "variable", LabelNames: []string{"name"}}, {Type: "output", LabelNames: []string{"name"}},
	{Type: "locals"}, {Type: "resource", LabelNames: []string{"type", "name"}},
	{Type: "data", LabelNames: []string{"type", "name"}}, {Type: "module", LabelNames: []string{"name"}},
	{Type: "moved"}, {Type: "import"}, {Type: "check", LabelNames: []string{"name"}},
	{Type: "removed"},
}}

// LoadTerraform parses every .tf file in dir (not subdirectories) with HCL's native syntax, and
// collects the test files under dir/tests for formatting checks.
func LoadTerraform(dir string) (*TFModule, error) {
	m := &TFModule{Dir: dir, Files: map[string][]byte{}, Locals: map[string]*hcl.Attribute{}}
	p := hclparse.NewParser()
	var diags hcl.Diagnostics
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && path != dir {
				return filepath.SkipDir // .terraform
			}
			return nil
		}
		if !strings.HasSuffix(path, ".tf") && !strings.HasSuffix(path, ".tftest.hcl") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		m.Files[rel] = src
		f, ds := p.ParseHCL(src, rel)
		diags = append(diags, ds...)
		if ds.HasErrors() || filepath.Dir(rel) != "." || !strings.HasSuffix(rel, ".tf") {
			return nil
		}
		content, _, ds := f.Body.PartialContent(tfTopLevel)
		diags = append(diags, ds...)
		for _, b := range content.Blocks {
			m.Blocks = append(m.Blocks, TFBlock{Type: b.Type, Labels: b.Labels, Body: b.Body, File: rel})
			if b.Type == "locals" {
				attrs, ds := b.Body.JustAttributes()
				diags = append(diags, ds...)
				for name, a := range attrs {
					m.Locals[name] = a
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return m, nil
}

// Resources returns the resource blocks of a type, by name.
func (m *TFModule) Resources(typ string) map[string]TFBlock {
	out := map[string]TFBlock{}
	for _, b := range m.Blocks {
		if b.Type == "resource" && b.Labels[0] == typ {
			out[b.Labels[1]] = b
		}
	}
	return out
}

// ResourceTypes lists the resource types declared, sorted.
func (m *TFModule) ResourceTypes() []string {
	seen := map[string]bool{}
	for _, b := range m.Blocks {
		if b.Type == "resource" {
			seen[b.Labels[0]] = true
		}
	}
	return sortedKeys(seen)
}

// Block returns the first top-level block of the type with the labels.
func (m *TFModule) Block(typ string, labels ...string) (TFBlock, bool) {
	for _, b := range m.Blocks {
		if b.Type == typ && strings.Join(b.Labels, "\x00") == strings.Join(labels, "\x00") {
			return b, true
		}
	}
	return TFBlock{}, false
}

// VariableDefaults evaluates every variable's default (variables without one are left out).
func (m *TFModule) VariableDefaults() (map[string]cty.Value, error) {
	out := map[string]cty.Value{}
	for _, b := range m.Blocks {
		if b.Type != "variable" {
			continue
		}
		attrs, diags := b.Body.JustAttributes()
		if diags.HasErrors() {
			// validation blocks make JustAttributes fail; read just the default.
			c, _, ds := b.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "default"}}})
			if ds.HasErrors() {
				return nil, ds
			}
			attrs = c.Attributes
		}
		if a, ok := attrs["default"]; ok {
			v, ds := a.Expr.Value(nil)
			if ds.HasErrors() {
				return nil, fmt.Errorf("variable %s default: %w", b.Labels[0], ds)
			}
			out[b.Labels[0]] = v
		}
	}
	return out, nil
}

// EvalContext can evaluate the module's plain expressions: var.* (defaults, plus overrides),
// local.*, path.module, and the functions file, jsondecode and jsonencode.
func (m *TFModule) EvalContext(vars map[string]cty.Value) (*hcl.EvalContext, error) {
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":  cty.ObjectVal(vars),
			"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(m.Dir)}),
		},
		Functions: map[string]function.Function{
			"jsondecode": stdlib.JSONDecodeFunc,
			"jsonencode": stdlib.JSONEncodeFunc,
			"file": function.New(&function.Spec{
				Params: []function.Parameter{{Name: "path", Type: cty.String}},
				Type:   function.StaticReturnType(cty.String),
				Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
					p := args[0].AsString()
					if !filepath.IsAbs(p) {
						p = filepath.Join(m.Dir, p)
					}
					b, err := os.ReadFile(p)
					if err != nil {
						return cty.NilVal, err
					}
					return cty.StringVal(string(b)), nil
				},
			}),
		},
	}
	locals := map[string]cty.Value{}
	// Locals may use each other: evaluate until nothing new resolves.
	for progress := true; progress; {
		progress = false
		for name, a := range m.Locals {
			if _, done := locals[name]; done {
				continue
			}
			ctx.Variables["local"] = cty.ObjectVal(locals)
			v, diags := a.Expr.Value(ctx)
			if !diags.HasErrors() {
				locals[name] = v
				progress = true
			}
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
