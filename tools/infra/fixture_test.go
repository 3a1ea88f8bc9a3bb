package infra

import (
	"sync"
	"testing"
)

// repo is everything the tests read, loaded once per test binary: rendering both overlays is most of
// the suite's time.
type repo struct {
	root     string
	services []string
	configs  map[string]ServiceConfig
	routes   map[string]map[string]bool
	overlays map[string]*Rendered
	skaffold *SkaffoldConfig
}

var loadRepo = sync.OnceValues(func() (*repo, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	r := &repo{root: root, configs: map[string]ServiceConfig{}, routes: map[string]map[string]bool{}, overlays: map[string]*Rendered{}}
	if r.services, err = Services(root); err != nil {
		return nil, err
	}
	for _, s := range r.services {
		if r.configs[s], err = LoadServiceConfig(root, s); err != nil {
			return nil, err
		}
		if r.routes[s], err = ServedPaths(root, s); err != nil {
			return nil, err
		}
	}
	for _, o := range Overlays {
		if r.overlays[o], err = BuildOverlay(root, o); err != nil {
			return nil, err
		}
	}
	if r.skaffold, err = LoadSkaffold(root); err != nil {
		return nil, err
	}
	return r, nil
})

func mustRepo(t *testing.T) *repo {
	t.Helper()
	r, err := loadRepo()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// forEachOverlay runs f as a subtest per overlay.
func forEachOverlay(t *testing.T, f func(t *testing.T, r *repo, out *Rendered)) {
	r := mustRepo(t)
	for _, name := range Overlays {
		t.Run(name, func(t *testing.T) { f(t, r, r.overlays[name]) })
	}
}
