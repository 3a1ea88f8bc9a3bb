package infra

import (
	"fmt"
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered manifest, decoded into its k8s.io/api type.
type Object struct {
	GVK       schema.GroupVersionKind
	Name      string
	Namespace string
	Obj       runtime.Object
	YAML      []byte
}

// Rendered is an overlay's output.
type Rendered struct {
	Overlay string
	Objects []Object
	YAML    []byte // the whole stream, as `kustomize build` prints it
}

// scheme knows exactly the kinds the deployment may contain; anything else fails the decode.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme, policyv1.AddToScheme,
		networkingv1.AddToScheme, discoveryv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strictDecoder refuses unknown and duplicate fields.
var strictDecoder = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// monitoringKinds are the custom resources of the monitoring components, which k8s.io/api has no
// types for: they decode as unstructured objects, and make test-infra checks them against the real
// CRDs (Google Managed Prometheus, prometheus-operator) in a kube-apiserver.
var monitoringKinds = map[schema.GroupVersionKind]bool{
	{Group: "monitoring.googleapis.com", Version: "v1", Kind: "PodMonitoring"}: true,
	{Group: "monitoring.googleapis.com", Version: "v1", Kind: "Rules"}:         true,
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}:    true,
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}:    true,
}

// decode decodes one rendered object: strictly into its k8s.io/api type, or as unstructured when it
// is one of monitoringKinds.
func decode(y []byte) (runtime.Object, *schema.GroupVersionKind, error) {
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(y, &u.Object); err != nil {
		return nil, nil, err
	}
	if gvk := u.GroupVersionKind(); monitoringKinds[gvk] {
		return u, &gvk, nil
	}
	return strictDecoder.Decode(y, nil, nil)
}

// Overlays are the directories under deploy/overlays that skaffold's profiles render.
var Overlays = []string{"local", "gke"}

// BuildOverlay renders deploy/overlays/<name> in-process with kustomize's API (what `kustomize
// build` and skaffold run) and decodes every object strictly into its k8s.io/api type (the
// monitoringKinds as unstructured objects).
func BuildOverlay(root, name string) (*Rendered, error) {
	return BuildKustomization(filepath.Join(root, "deploy", "overlays", name), name)
}

// BuildKustomization renders the kustomization in dir as BuildOverlay does; name names it in errors.
func BuildKustomization(dir, name string) (*Rendered, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", name, err)
	}
	out := &Rendered{Overlay: name}
	if out.YAML, err = m.AsYaml(); err != nil {
		return nil, err
	}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		obj, gvk, err := decode(y)
		if err != nil {
			return nil, fmt.Errorf("overlay %s: %s %s: %w", name, r.GetKind(), r.GetName(), err)
		}
		out.Objects = append(out.Objects, Object{GVK: *gvk, Name: r.GetName(), Namespace: r.GetNamespace(), Obj: obj, YAML: y})
	}
	return out, nil
}

// Deployments returns the Deployments by name.
func (r *Rendered) Deployments() map[string]*appsv1.Deployment {
	m := map[string]*appsv1.Deployment{}
	for _, o := range r.Objects {
		if d, ok := o.Obj.(*appsv1.Deployment); ok {
			m[d.Name] = d
		}
	}
	return m
}

// Find returns the object of the kind and name, or nil.
func (r *Rendered) Find(kind, name string) runtime.Object {
	for _, o := range r.Objects {
		if o.GVK.Kind == kind && o.Name == name {
			return o.Obj
		}
	}
	return nil
}

// OfKind returns every object of the kind.
func (r *Rendered) OfKind(kind string) []runtime.Object {
	var objs []runtime.Object
	for _, o := range r.Objects {
		if o.GVK.Kind == kind {
			objs = append(objs, o.Obj)
		}
	}
	return objs
}

// ContainerEnv returns the environment a container gets: its env entries and every key of the
// ConfigMaps it loads with envFrom. Values from the downward API or Secrets are returned as "".
func (r *Rendered) ContainerEnv(c corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, _ := r.Find("ConfigMap", ef.ConfigMapRef.Name).(*corev1.ConfigMap)
			if cm == nil {
				return nil, fmt.Errorf("container %s: envFrom ConfigMap %s is not in the overlay", c.Name, ef.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				env[ef.Prefix+k] = v
			}
		case ef.SecretRef != nil:
			s, _ := r.Find("Secret", ef.SecretRef.Name).(*corev1.Secret)
			if s == nil {
				return nil, fmt.Errorf("container %s: envFrom Secret %s is not in the overlay", c.Name, ef.SecretRef.Name)
			}
			for k := range s.Data {
				env[ef.Prefix+k] = ""
			}
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env, nil
}
