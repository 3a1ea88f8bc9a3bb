package infra

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ConfigVar is one environment variable a service's config struct reads.
type ConfigVar struct {
	Name       string // with the prefix: BROKER_MQTT_ADDR
	Field      string // Go field path: MQTTAddr
	Default    string // the `default` tag
	HasDefault bool
}

// ServiceConfig is what a service's internal/config package reads from the environment.
type ServiceConfig struct {
	Service string
	Prefix  string
	Vars    map[string]ConfigVar
}

// Names returns the variable names, sorted.
func (c ServiceConfig) Names() []string {
	names := make([]string, 0, len(c.Vars))
	for n := range c.Vars {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LoadServiceConfig reads services/<service>/internal/config's Go source: the Prefix constant and the
// Config struct's fields, named the way github.com/kelseyhightower/envconfig names them (the
// `envconfig` tag or the upper-cased field name, split_words, `ignored`, nested and embedded structs).
func LoadServiceConfig(root, service string) (ServiceConfig, error) {
	dir := filepath.Join(root, "services", service, "internal", "config")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ServiceConfig{}, err
	}
	fset := token.NewFileSet()
	structs := map[string]*ast.StructType{}
	res := &resolver{root: root, imports: map[string]string{}, cache: map[string]map[string]*ast.StructType{}}
	prefix := ""
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return ServiceConfig{}, err
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			alias := filepath.Base(path)
			if imp.Name != nil {
				alias = imp.Name.Name
			}
			res.imports[alias] = path
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, spec := range gd.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					if st, ok := s.Type.(*ast.StructType); ok {
						structs[s.Name.Name] = st
					}
				case *ast.ValueSpec:
					for i, n := range s.Names {
						if n.Name != "Prefix" || gd.Tok != token.CONST || i >= len(s.Values) {
							continue
						}
						lit, ok := s.Values[i].(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							return ServiceConfig{}, fmt.Errorf("%s: Prefix is not a string literal", dir)
						}
						prefix, _ = strconv.Unquote(lit.Value)
					}
				}
			}
		}
	}
	cfg, ok := structs["Config"]
	if !ok {
		return ServiceConfig{}, fmt.Errorf("%s: no Config struct", dir)
	}
	if prefix == "" {
		return ServiceConfig{}, fmt.Errorf("%s: no Prefix constant", dir)
	}
	sc := ServiceConfig{Service: service, Prefix: prefix, Vars: map[string]ConfigVar{}}
	vc := varCollector{out: sc.Vars, res: res}
	if err := vc.collect(structs, cfg, prefix, "", 0); err != nil {
		return ServiceConfig{}, fmt.Errorf("%s: %w", dir, err)
	}
	return sc, nil
}

var (
	gatherWords  = regexp.MustCompile("([^A-Z]+|[A-Z]+[^A-Z]+|[A-Z]+)")
	splitAcronym = regexp.MustCompile("([A-Z]+)([A-Z][^A-Z]+)")
)

// modulePath is the module the repository's shared packages (pkg/) live in.
const modulePath = "github.com/mcloudtt/mcloudtt/pkg"

// resolver finds struct types of the repository's own pkg/ packages that a config struct embeds
// (redisconn.Env), by reading their source.
type resolver struct {
	root    string
	imports map[string]string // package name in the config files -> import path
	cache   map[string]map[string]*ast.StructType
}

// structsOf returns the struct types declared in the package imported as alias, or nil when it is
// not one of the repository's.
func (r *resolver) structsOf(alias string) (map[string]*ast.StructType, error) {
	path, ok := r.imports[alias]
	if !ok || (path != modulePath && !strings.HasPrefix(path, modulePath+"/")) {
		return nil, nil
	}
	if st, ok := r.cache[path]; ok {
		return st, nil
	}
	dir := filepath.Join(r.root, "pkg", strings.TrimPrefix(strings.TrimPrefix(path, modulePath), "/"))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	structs := map[string]*ast.StructType{}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, decl := range f.Decls {
			if gd, ok := decl.(*ast.GenDecl); ok {
				for _, spec := range gd.Specs {
					if ts, ok := spec.(*ast.TypeSpec); ok {
						if st, ok := ts.Type.(*ast.StructType); ok {
							structs[ts.Name.Name] = st
						}
					}
				}
			}
		}
	}
	r.cache[path] = structs
	return structs, nil
}

// varCollector gathers the variables a Config struct reads into out, reading the structs it
// embeds from the repository's pkg/ with res.
type varCollector struct {
	out map[string]ConfigVar
	res *resolver
}

// collect adds the variables of config struct st to vc.out: each exported field by its
// variable name under prefix, nested and embedded structs recursively. structs are the struct
// types of st's package; path is st's field path from Config.
func (vc *varCollector) collect(structs map[string]*ast.StructType, st *ast.StructType, prefix, path string, depth int) error {
	if depth > 8 {
		return fmt.Errorf("config structs nest deeper than 8 levels at %s", path)
	}
	for _, f := range st.Fields.List {
		tag, err := fieldTag(f)
		if err != nil {
			return err
		}
		if v, _ := strconv.ParseBool(tag.Get("ignored")); v {
			continue
		}
		typ := f.Type
		if star, ok := typ.(*ast.StarExpr); ok {
			typ = star.X
		}
		var nested *ast.StructType
		if id, ok := typ.(*ast.Ident); ok {
			nested = structs[id.Name]
		}
		names := f.Names
		if len(names) == 0 { // embedded
			id, done, err := vc.embedded(structs, typ, nested, tag, prefix, path, depth)
			if err != nil {
				return err
			}
			if done {
				continue
			}
			names = []*ast.Ident{id}
		}
		for _, n := range names {
			if !n.IsExported() {
				continue
			}
			key := envKey(prefix, n.Name, tag)
			if nested != nil {
				if err := vc.collect(structs, nested, key, joinPath(path, n.Name), depth+1); err != nil {
					return err
				}
				continue
			}
			def, has := tag.Lookup("default")
			vc.out[key] = ConfigVar{Name: key, Field: joinPath(path, n.Name), Default: def, HasDefault: has}
		}
	}
	return nil
}

// fieldTag returns f's struct tag, empty when it has none.
func fieldTag(f *ast.Field) (reflect.StructTag, error) {
	if f.Tag == nil {
		return "", nil
	}
	s, err := strconv.Unquote(f.Tag.Value)
	if err != nil {
		return "", err
	}
	return reflect.StructTag(s), nil
}

// embedded handles an embedded field of type typ (nested when it is a local struct).
// A struct without an envconfig tag, local or from the repository's pkg/, contributes its
// fields under the same prefix; done is true then, and for anything else that is not a
// variable. Otherwise it returns the field's name, to be read as a variable.
func (vc *varCollector) embedded(structs map[string]*ast.StructType, typ ast.Expr, nested *ast.StructType, tag reflect.StructTag, prefix, path string, depth int) (id *ast.Ident, done bool, err error) {
	if sel, ok := typ.(*ast.SelectorExpr); ok {
		// A type from another package: a struct of the repository's pkg/ (redisconn.Env)
		// is read like a local one; anything else is no config struct.
		pkgID, _ := sel.X.(*ast.Ident)
		if pkgID == nil || tag.Get("envconfig") != "" {
			return nil, true, nil
		}
		other, err := vc.res.structsOf(pkgID.Name)
		if err != nil {
			return nil, true, err
		}
		if st := other[sel.Sel.Name]; st != nil {
			if err := vc.collect(other, st, prefix, joinPath(path, sel.Sel.Name), depth+1); err != nil {
				return nil, true, err
			}
		}
		return nil, true, nil
	}
	id, ok := typ.(*ast.Ident)
	if !ok {
		return nil, true, nil
	}
	if nested != nil && tag.Get("envconfig") == "" {
		if err := vc.collect(structs, nested, prefix, joinPath(path, id.Name), depth+1); err != nil {
			return nil, true, err
		}
		return nil, true, nil
	}
	return id, false, nil
}

// envKey is the variable name envconfig gives field name under prefix: the envconfig tag,
// or the name (split into words with split_words), upper-cased after the prefix.
func envKey(prefix, name string, tag reflect.StructTag) string {
	key := name
	if v, _ := strconv.ParseBool(tag.Get("split_words")); v {
		var words []string
		for _, w := range gatherWords.FindAllStringSubmatch(name, -1) {
			if m := splitAcronym.FindStringSubmatch(w[0]); len(m) == 3 {
				words = append(words, m[1], m[2])
			} else {
				words = append(words, w[0])
			}
		}
		key = strings.Join(words, "_")
	}
	if alt := tag.Get("envconfig"); alt != "" {
		key = alt
	}
	return strings.ToUpper(prefix + "_" + key)
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// ListenPort reports the TCP port of a listener address such as ":1883" or "0.0.0.0:8080". Addresses
// that name a host ("redis:6379") are where a service connects to, not where it listens, and report
// false, as does an empty (disabled) address.
func ListenPort(addr string) (int, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		return 0, false
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return 0, false
	}
	return p, true
}
