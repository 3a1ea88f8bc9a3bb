package infra

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var routePattern = regexp.MustCompile(`Handle(?:Func)?\(\s*"(?:[A-Z]+ )?(/[^"]*)"`)

// ServedPaths returns the HTTP paths a service registers on a ServeMux anywhere under its internal/
// tree (mux.HandleFunc("GET /healthz", ...)), so probes can only point at routes that exist.
func ServedPaths(root, service string) (map[string]bool, error) {
	paths := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(root, "services", service, "internal"), func(p string, d fs.DirEntry, err error) error {
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
		return nil
	})
	return paths, err
}
