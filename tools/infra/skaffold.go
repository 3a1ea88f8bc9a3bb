package infra

import (
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// SkaffoldConfig is the part of skaffold's schema (skaffold/v4beta13) that skaffold.yaml uses. It is
// decoded strictly: a misspelt or unexpected field fails, as it would make skaffold ignore a setting.
type SkaffoldConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Build       SkaffoldBuild         `json:"build"`
	Manifests   SkaffoldManifests     `json:"manifests"`
	Deploy      SkaffoldDeploy        `json:"deploy"`
	PortForward []SkaffoldPortForward `json:"portForward"`
	Profiles    []SkaffoldProfile     `json:"profiles"`
}

type SkaffoldBuild struct {
	Local     *SkaffoldLocalBuild `json:"local,omitempty"`
	Artifacts []SkaffoldArtifact  `json:"artifacts,omitempty"`
}

type SkaffoldLocalBuild struct {
	Push        *bool `json:"push,omitempty"`
	UseBuildkit *bool `json:"useBuildkit,omitempty"`
	Concurrency *int  `json:"concurrency,omitempty"`
}

type SkaffoldArtifact struct {
	Image   string `json:"image"`
	Context string `json:"context"`
	Docker  *struct {
		Dockerfile string `json:"dockerfile"`
	} `json:"docker"`
}

type SkaffoldManifests struct {
	Kustomize *struct {
		Paths []string `json:"paths"`
	} `json:"kustomize,omitempty"`
}

type SkaffoldDeploy struct {
	Kubectl *struct{} `json:"kubectl,omitempty"`
}

type SkaffoldPortForward struct {
	ResourceType string `json:"resourceType"`
	ResourceName string `json:"resourceName"`
	Namespace    string `json:"namespace"`
	Port         int    `json:"port"`
	LocalPort    int    `json:"localPort"`
}

type SkaffoldProfile struct {
	Name      string            `json:"name"`
	Build     *SkaffoldBuild    `json:"build,omitempty"`
	Manifests SkaffoldManifests `json:"manifests"`
}

// LoadSkaffold decodes skaffold.yaml at the repository root strictly.
func LoadSkaffold(root string) (*SkaffoldConfig, error) {
	data, err := os.ReadFile(filepath.Join(root, "skaffold.yaml"))
	if err != nil {
		return nil, err
	}
	var c SkaffoldConfig
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}
