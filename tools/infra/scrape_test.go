package infra

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// withPrometheusOperator renders the local overlay with the prometheus-operator component, as an
// operator adds it to an overlay.
func withPrometheusOperator(t *testing.T, root string) *Rendered {
	t.Helper()
	dir := t.TempDir()
	rel := func(p string) string { // kustomize takes no absolute paths
		r, err := filepath.Rel(dir, filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n",
		rel("deploy/overlays/local"), rel("deploy/components/prometheus-operator"))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := BuildKustomization(dir, "local + components/prometheus-operator")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every service is scraped: on GKE by a PodMonitoring, with prometheus-operator by a ServiceMonitor
// through a Service; either selects the service's pods, names its HTTP container port and a path the
// service serves, makes the job label the service's name, and a NetworkPolicy lets the collectors'
// namespace reach the port.
func TestMonitoringScrapesEveryService(t *testing.T) {
	r := mustRepo(t)
	cases := []struct {
		name, kind, collectors string
		out                    *Rendered
	}{
		{"gke", "PodMonitoring", "gke-gmp-system", r.overlays["gke"]},
		{"prometheus-operator", "ServiceMonitor", "monitoring", withPrometheusOperator(t, r.root)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			deps := c.out.Deployments()
			var pols []*networkingv1.NetworkPolicy
			for _, o := range c.out.OfKind("NetworkPolicy") {
				pols = append(pols, o.(*networkingv1.NetworkPolicy))
			}
			for _, svc := range r.services {
				d := deps[svc]
				if d == nil {
					t.Fatalf("no Deployment %s", svc)
				}
				ctr := serviceContainer(t, d, svc)
				mon, _ := c.out.Find(c.kind, svc).(*unstructured.Unstructured)
				if ctr == nil || mon == nil {
					t.Fatalf("no %s %s", c.kind, svc)
				}
				var ep scrapeEndpoint
				if c.kind == "PodMonitoring" {
					ep = podMonitoringTarget(t, mon, d.Spec.Template.Labels)
				} else {
					ep = serviceMonitorTarget(t, c.out, mon, d.Spec.Template.Labels, svc)
				}
				port := containerPort(ctr, ep.port)
				if port == 0 {
					t.Errorf("%s %s: port %s is no port of container %s", c.kind, svc, ep.port.String(), svc)
				}
				if !r.routes[svc][ep.path] {
					t.Errorf("%s %s: path %q is not served by %s", c.kind, svc, ep.path, svc)
				}
				if !ingressFromNamespace(pols, d.Spec.Template.Labels, c.collectors, ctr, port) {
					t.Errorf("%s: no NetworkPolicy admits namespace %s to port %d", svc, c.collectors, port)
				}
			}
		})
	}
}

type scrapeEndpoint struct {
	port intstr.IntOrString // a container port (PodMonitoring) or the Service's targetPort
	path string
}

// spec decodes an unstructured object's spec into v.
func spec(t *testing.T, u *unstructured.Unstructured, v any) {
	t.Helper()
	y, err := yaml.Marshal(u.Object["spec"])
	if err == nil {
		err = yaml.Unmarshal(y, v)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

type monitorSpec struct {
	JobLabel  string               `json:"jobLabel"`
	Selector  metav1.LabelSelector `json:"selector"`
	Endpoints []struct {
		Port intstr.IntOrString `json:"port"`
		Path string             `json:"path"`
	} `json:"endpoints"`
}

func podMonitoringTarget(t *testing.T, pm *unstructured.Unstructured, podLabels map[string]string) scrapeEndpoint {
	var s monitorSpec
	spec(t, pm, &s)
	if !selectorMatches(&s.Selector, podLabels) || len(s.Endpoints) != 1 {
		t.Fatalf("PodMonitoring %s: selects %v, endpoints %d; want the pods %v and one endpoint", pm.GetName(), s.Selector, len(s.Endpoints), podLabels)
	}
	return scrapeEndpoint{port: s.Endpoints[0].Port, path: s.Endpoints[0].Path}
}

// serviceMonitorTarget finds the one Service the ServiceMonitor selects, checks that it selects the
// pods and carries the job label, and returns the endpoint's target port.
func serviceMonitorTarget(t *testing.T, out *Rendered, sm *unstructured.Unstructured, podLabels map[string]string, job string) scrapeEndpoint {
	var s monitorSpec
	spec(t, sm, &s)
	var svcs []*corev1.Service
	for _, o := range out.OfKind("Service") {
		if sv := o.(*corev1.Service); selectorMatches(&s.Selector, sv.Labels) {
			svcs = append(svcs, sv)
		}
	}
	if len(svcs) != 1 || len(s.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor %s selects %d Services and has %d endpoints, want 1 and 1", sm.GetName(), len(svcs), len(s.Endpoints))
	}
	sv := svcs[0]
	if !selectorMatches(&metav1.LabelSelector{MatchLabels: sv.Spec.Selector}, podLabels) || len(sv.Spec.Selector) == 0 {
		t.Errorf("Service %s does not select the %s pods", sv.Name, job)
	}
	if s.JobLabel == "" || sv.Labels[s.JobLabel] != job {
		t.Errorf("ServiceMonitor %s: jobLabel %q gives job %q, want %q", sm.GetName(), s.JobLabel, sv.Labels[s.JobLabel], job)
	}
	for _, p := range sv.Spec.Ports {
		if p.Name == s.Endpoints[0].Port.String() {
			return scrapeEndpoint{port: p.TargetPort, path: s.Endpoints[0].Path}
		}
	}
	t.Fatalf("Service %s has no port %s", sv.Name, s.Endpoints[0].Port.String())
	return scrapeEndpoint{}
}

// containerPort resolves a port name or number to the container's port number, or 0.
func containerPort(c *corev1.Container, p intstr.IntOrString) int {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && int(cp.ContainerPort) == p.IntValue()) {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

// ingressFromNamespace says whether a policy that selects the pod admits pods of the namespace
// named ns (by its kubernetes.io/metadata.name label) to the port.
func ingressFromNamespace(pols []*networkingv1.NetworkPolicy, podLabels map[string]string, ns string, c *corev1.Container, port int) bool {
	nsLabels := map[string]string{"kubernetes.io/metadata.name": ns}
	for _, p := range pols {
		if !hasType(p, networkingv1.PolicyTypeIngress) || !selectorMatches(&p.Spec.PodSelector, podLabels) {
			continue
		}
		for _, rule := range p.Spec.Ingress {
			portOK := len(rule.Ports) == 0
			for _, rp := range rule.Ports {
				portOK = portOK || (rp.Port != nil && containerPort(c, *rp.Port) == port)
			}
			for _, from := range rule.From {
				if portOK && from.NamespaceSelector != nil && selectorMatches(from.NamespaceSelector, nsLabels) && from.PodSelector == nil {
					return true
				}
			}
		}
	}
	return false
}
