package infra

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// RepoRoot returns the repository root: the nearest directory at or above the working directory that
// holds go.work and services/.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isFile(filepath.Join(dir, "go.work")) && isDir(filepath.Join(dir, "services")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root not found: no go.work beside services/ above the working directory")
		}
		dir = parent
	}
}

// Services lists the service directories under services/: those with a cmd/<name> main package.
func Services(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "services"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && isDir(filepath.Join(root, "services", e.Name(), "cmd", e.Name())) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no services under %s", filepath.Join(root, "services"))
	}
	sort.Strings(names)
	return names, nil
}

// ImageName is the image (skaffold artifact and manifest) name of a service.
func ImageName(service string) string { return "mcloudtt-" + service }

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
