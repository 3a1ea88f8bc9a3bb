package infra

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var routePattern = regexp.MustCompile(`Handle(?:Func)?\(\s*"(?:[A-Z]+ )?(/[^"]*)"`)

// ServedPaths returns the HTTP paths a service registers on a ServeMux anywhere under its internal/
// tree (mux.HandleFunc("GET /healthz", ...)), and those registered by the functions of
// pkg/service it calls (service.Routes(...)), so probes can only point at routes that exist.
func ServedPaths(root, service string) (map[string]bool, error) {
	shared, err := sharedRoutes(filepath.Join(root, "pkg", "service"))
	if err != nil {
		return nil, err
	}
	paths := map[string]bool{}
	err = filepath.WalkDir(filepath.Join(root, "services", service, "internal"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range routePattern.FindAllSubmatch(src, -1) {
			paths[string(m[1])] = true
		}
		for fn, ps := range shared {
			if strings.Contains(string(src), "service."+fn+"(") {
				for _, r := range ps {
					paths[r] = true
				}
			}
		}
		return nil
	})
	return paths, err
}

// sharedRoutes maps each function of the shared service package to the paths it registers.
func sharedRoutes(dir string) (map[string][]string, error) {
	out := map[string][]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil || fd.Recv != nil {
				continue
			}
			body := src[fset.Position(fd.Body.Pos()).Offset:fset.Position(fd.Body.End()).Offset]
			for _, m := range routePattern.FindAllSubmatch(body, -1) {
				out[fd.Name.Name] = append(out[fd.Name.Name], string(m[1]))
			}
		}
	}
	return out, nil
}
