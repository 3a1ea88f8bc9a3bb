package infra

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// ProviderSchemaFile is the committed extract of the google provider's schema: only the resource
// types (and the provider block) terraform/ uses, in the format of `tofu providers schema -json`
// without descriptions. scripts/tf-schema-fixture.sh writes it from a provider binary.
const ProviderSchemaFile = "tools/infra/testdata/google-provider-schema.json"

// ProviderSchema is that file.
type ProviderSchema struct {
	// ProviderVersion is the version of the provider binary the schema came from; it must equal the
	// version pinned in terraform/versions.tf.
	ProviderVersion string `json:"provider_version"`
	// Source says how that binary was made (repository, tag, commit).
	Source string `json:"source"`
	// Provider is the provider block's own schema.
	Provider TFSchema `json:"provider"`
	// ResourceSchemas are the resource types' schemas, by type.
	ResourceSchemas map[string]TFSchema `json:"resource_schemas"`
}

// TFSchema is one schema: a version and its top-level block.
type TFSchema struct {
	Version int           `json:"version"`
	Block   TFSchemaBlock `json:"block"`
}

// TFSchemaBlock is a block's attributes and nested block types.
type TFSchemaBlock struct {
	Attributes         map[string]TFSchemaAttribute `json:"attributes,omitempty"`
	BlockTypes         map[string]TFSchemaBlockType `json:"block_types,omitempty"`
	Deprecated         bool                         `json:"deprecated,omitempty"`
	DeprecationMessage string                       `json:"deprecation_message,omitempty"`
}

// TFSchemaAttribute is one attribute. Type is the cty type in JSON (a string or a list); nested
// attribute types (NestedType) are not used by the google provider's SDK resources.
type TFSchemaAttribute struct {
	Type       json.RawMessage `json:"type,omitempty"`
	NestedType json.RawMessage `json:"nested_type,omitempty"`
	Required   bool            `json:"required,omitempty"`
	Optional   bool            `json:"optional,omitempty"`
	Computed   bool            `json:"computed,omitempty"`
	Sensitive  bool            `json:"sensitive,omitempty"`
	Deprecated bool            `json:"deprecated,omitempty"`
	// DeprecationMessage says what to use instead of a deprecated attribute.
	DeprecationMessage string `json:"deprecation_message,omitempty"`
	WriteOnly          bool   `json:"write_only,omitempty"`
}

// TFSchemaBlockType is a nested block type: how it nests and how many may appear.
type TFSchemaBlockType struct {
	NestingMode string        `json:"nesting_mode"` // single, group, list, set, map
	Block       TFSchemaBlock `json:"block"`
	MinItems    int           `json:"min_items,omitempty"`
	MaxItems    int           `json:"max_items,omitempty"`
}

// LoadProviderSchema reads the fixture.
func LoadProviderSchema(path string) (*ProviderSchema, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s ProviderSchema
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// Meta-arguments terraform accepts in every resource block, beside the provider's schema.
var (
	resourceMetaAttrs  = map[string]bool{"count": true, "for_each": true, "provider": true, "depends_on": true}
	resourceMetaBlocks = map[string]bool{"lifecycle": true, "provisioner": true, "connection": true}
	providerMetaAttrs  = map[string]bool{"alias": true}
)

// ValidateResources checks every resource block of m (and every provider "google" block) against
// the schema: each attribute exists and is not read-only, each required attribute is set, each
// nested block is a block type of the schema (not an attribute written as a block, or the reverse)
// and appears as often as its nesting allows, recursively. A resource type the fixture lacks is an
// error too: the fixture must be regenerated. Problems come back sorted, each with its position.
func (s *ProviderSchema) ValidateResources(m *TFModule) []string {
	var problems []string
	for _, b := range m.Blocks {
		switch {
		case b.Type == "resource":
			typ := b.Labels[0]
			rs, ok := s.ResourceSchemas[typ]
			where := fmt.Sprintf("%s: resource %q %q", b.File, typ, b.Labels[1])
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: the schema fixture has no %s (regenerate %s)", where, typ, ProviderSchemaFile))
				continue
			}
			problems = append(problems, validateBody(b.Body, rs.Block, where, resourceMetaAttrs, resourceMetaBlocks)...)
		case b.Type == "provider" && b.Labels[0] == "google":
			problems = append(problems, validateBody(b.Body, s.Provider.Block, b.File+": provider \"google\"", providerMetaAttrs, nil)...)
		}
	}
	sort.Strings(problems)
	return problems
}

// validateBody checks one block's body against its schema: its attributes, then its nested
// blocks, recursively. metaAttrs and metaBlocks are the names terraform itself accepts there.
func validateBody(body hcl.Body, schema TFSchemaBlock, where string, metaAttrs, metaBlocks map[string]bool) []string {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return []string{where + ": not HCL native syntax"}
	}
	problems := checkAttributes(sb, schema, where, metaAttrs)
	return append(problems, checkBlocks(sb, schema, where, metaBlocks)...)
}

// atLine is where with the line of r.
func atLine(where string, r hcl.Range) string {
	return fmt.Sprintf("%s (line %d)", where, r.Start.Line)
}

// checkAttributes checks that every attribute of sb exists in the schema as a settable,
// non-deprecated attribute, and that every required one is set.
func checkAttributes(sb *hclsyntax.Body, schema TFSchemaBlock, where string, metaAttrs map[string]bool) []string {
	var problems []string
	for name, a := range sb.Attributes {
		if metaAttrs[name] {
			continue
		}
		at := atLine(where, a.SrcRange)
		sa, ok := schema.Attributes[name]
		switch {
		case ok && sa.Computed && !sa.Optional && !sa.Required:
			problems = append(problems, fmt.Sprintf("%s: %s is read-only (computed by the provider)", at, name))
		case ok && sa.Deprecated:
			problems = append(problems, fmt.Sprintf("%s: %s is deprecated: %s", at, name, sa.DeprecationMessage))
		case ok:
		case schema.BlockTypes[name].NestingMode != "":
			problems = append(problems, fmt.Sprintf("%s: %s is a block: write %s { ... }, not %s = ...", at, name, name, name))
		default:
			problems = append(problems, fmt.Sprintf("%s: unknown attribute %s", at, name))
		}
	}
	for _, name := range sortedKeys(schema.Attributes) {
		if schema.Attributes[name].Required {
			if _, ok := sb.Attributes[name]; !ok {
				problems = append(problems, fmt.Sprintf("%s: missing required attribute %s", where, name))
			}
		}
	}
	return problems
}

// checkBlocks checks every nested block of sb (a dynamic block by its content) against its
// block type, recursively, then how often each block type appears.
func checkBlocks(sb *hclsyntax.Body, schema TFSchemaBlock, where string, metaBlocks map[string]bool) []string {
	var problems []string
	counts := map[string]int{}
	dynamic := map[string]bool{}
	for _, blk := range sb.Blocks {
		name, content := blk.Type, blk.Body
		if metaBlocks[name] {
			continue
		}
		if name == "dynamic" {
			if len(blk.Labels) != 1 {
				problems = append(problems, fmt.Sprintf("%s: dynamic block without one label", atLine(where, blk.TypeRange)))
				continue
			}
			name = blk.Labels[0]
			dynamic[name] = true
			if content = dynamicContent(blk); content == nil {
				problems = append(problems, fmt.Sprintf("%s: dynamic %q has no content block", atLine(where, blk.TypeRange), name))
				continue
			}
		}
		bt, ok := schema.BlockTypes[name]
		if !ok {
			if _, isAttr := schema.Attributes[name]; isAttr {
				problems = append(problems, fmt.Sprintf("%s: %s is an attribute: write %s = ..., not a block", atLine(where, blk.TypeRange), name, name))
			} else {
				problems = append(problems, fmt.Sprintf("%s: unknown block %s", atLine(where, blk.TypeRange), name))
			}
			continue
		}
		counts[name]++
		if bt.NestingMode == "map" && len(blk.Labels) != 1 && blk.Type != "dynamic" {
			problems = append(problems, fmt.Sprintf("%s: block %s (a map) needs one label", atLine(where, blk.TypeRange), name))
		}
		problems = append(problems, validateBody(content, bt.Block, fmt.Sprintf("%s > %s", where, name), nil, nil)...)
	}
	return append(problems, checkBlockCounts(schema, counts, dynamic, where)...)
}

// dynamicContent returns the body of a dynamic block's content block, to which the schema
// applies (the dynamic block's own body is for_each, iterator and labels), or nil when it
// has none.
func dynamicContent(blk *hclsyntax.Block) *hclsyntax.Body {
	var content *hclsyntax.Body
	for _, inner := range blk.Body.Blocks {
		if inner.Type == "content" {
			content = inner.Body
		}
	}
	return content
}

// checkBlockCounts checks that each block type of the schema appears as often as its nesting
// allows; a block type a dynamic block makes is not checked.
func checkBlockCounts(schema TFSchemaBlock, counts map[string]int, dynamic map[string]bool, where string) []string {
	var problems []string
	for _, name := range sortedKeys(schema.BlockTypes) {
		bt := schema.BlockTypes[name]
		n := counts[name]
		if dynamic[name] {
			continue // how many a dynamic block makes is known only when planning
		}
		max := bt.MaxItems
		if bt.NestingMode == "single" || bt.NestingMode == "group" {
			max = 1
		}
		switch {
		case n < bt.MinItems:
			problems = append(problems, fmt.Sprintf("%s: missing required block %s (at least %d)", where, name, bt.MinItems))
		case max > 0 && n > max:
			problems = append(problems, fmt.Sprintf("%s: block %s appears %d times, at most %d allowed", where, name, n, max))
		}
	}
	return problems
}
