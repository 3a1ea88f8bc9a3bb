package infra

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const (
	namespace   = "mcloudtt"
	partOfLabel = "app.kubernetes.io/part-of"
	nameLabel   = "app.kubernetes.io/name"
	imageUID    = 10001 // USER in every Dockerfile
)

func TestOverlayObjectsAreNamespacedAndLabelled(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, _ *repo, out *Rendered) {
		if len(out.Objects) == 0 {
			t.Fatal("overlay renders nothing")
		}
		for _, o := range out.Objects {
			meta := o.Obj.(metav1.Object)
			if o.GVK.Kind == "Namespace" {
				if o.Name != namespace {
					t.Errorf("Namespace %s, want only %s", o.Name, namespace)
				}
			} else if o.Namespace != namespace {
				t.Errorf("%s %s in namespace %q, want %q", o.GVK.Kind, o.Name, o.Namespace, namespace)
			}
			if meta.GetLabels()[partOfLabel] != "mcloudtt" {
				t.Errorf("%s %s lacks %s=mcloudtt", o.GVK.Kind, o.Name, partOfLabel)
			}
			if meta.GetAnnotations()["config.kubernetes.io/local-config"] != "" {
				t.Errorf("%s %s is kustomize-local and must not be rendered", o.GVK.Kind, o.Name)
			}
		}
	})
}

// Every pod in every overlay runs as non-root with a read-only root filesystem, no capabilities and
// no privilege escalation, under its own ServiceAccount, with probes and resources.
func TestPodsAreLockedDown(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, _ *repo, out *Rendered) {
		ns, _ := out.Find("Namespace", namespace).(*corev1.Namespace)
		if ns == nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Errorf("namespace %s must enforce the restricted Pod Security Standard", namespace)
		}
		saUsers := map[string][]string{}
		for name, d := range out.Deployments() {
			spec := d.Spec.Template.Spec
			ctx := spec.SecurityContext
			if ctx == nil || ctx.RunAsNonRoot == nil || !*ctx.RunAsNonRoot {
				t.Errorf("%s: pod securityContext.runAsNonRoot must be true", name)
			}
			if ctx == nil || ctx.RunAsUser == nil || *ctx.RunAsUser == 0 {
				t.Errorf("%s: pod securityContext.runAsUser must be a non-zero UID", name)
			}
			if ctx == nil || ctx.SeccompProfile == nil || ctx.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: pod seccompProfile must be RuntimeDefault", name)
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("%s: automountServiceAccountToken must be false (no service talks to the Kubernetes API)", name)
			}
			if spec.ServiceAccountName == "" || out.Find("ServiceAccount", spec.ServiceAccountName) == nil {
				t.Errorf("%s: ServiceAccount %q is not in the overlay", name, spec.ServiceAccountName)
			}
			saUsers[spec.ServiceAccountName] = append(saUsers[spec.ServiceAccountName], name)
			if len(spec.InitContainers) > 0 {
				t.Errorf("%s: init containers are not expected", name)
			}
			for _, c := range spec.Containers {
				where := name + "/" + c.Name
				sc := c.SecurityContext
				switch {
				case sc == nil:
					t.Errorf("%s: no container securityContext", where)
					continue
				case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
					t.Errorf("%s: readOnlyRootFilesystem must be true", where)
				case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
					t.Errorf("%s: allowPrivilegeEscalation must be false", where)
				case sc.Privileged != nil && *sc.Privileged:
					t.Errorf("%s: privileged", where)
				case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
					t.Errorf("%s: capabilities must drop ALL and add none", where)
				case sc.RunAsUser != nil && *sc.RunAsUser == 0:
					t.Errorf("%s: runs as root", where)
				}
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[res]; !ok {
						t.Errorf("%s: no %s request", where, res)
					}
					if _, ok := c.Resources.Limits[res]; !ok {
						t.Errorf("%s: no %s limit", where, res)
					}
				}
				if lim, req := c.Resources.Limits.Memory(), c.Resources.Requests.Memory(); lim.Cmp(*req) < 0 {
					t.Errorf("%s: memory limit %s below request %s", where, lim, req)
				}
				if c.ReadinessProbe == nil || c.LivenessProbe == nil {
					t.Errorf("%s: needs readiness and liveness probes", where)
				}
				if strings.HasSuffix(c.Image, ":latest") {
					t.Errorf("%s: image %s uses :latest", where, c.Image)
				}
			}
		}
		for sa, users := range saUsers {
			if len(users) > 1 {
				t.Errorf("ServiceAccount %s shared by %v: one per service", sa, users)
			}
		}
	})
}

// The services' Deployments run the skaffold artifact of the same name as the Dockerfile's UID.
func TestServiceImagesAreSkaffoldArtifacts(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, r *repo, out *Rendered) {
		artifacts := map[string]bool{}
		for _, a := range r.skaffold.Build.Artifacts {
			artifacts[a.Image] = true
		}
		deps := out.Deployments()
		for _, s := range r.services {
			d := deps[s]
			if d == nil {
				t.Errorf("no Deployment %s", s)
				continue
			}
			c := serviceContainer(t, d, s)
			if c == nil {
				continue
			}
			if c.Image != ImageName(s) || !artifacts[c.Image] {
				t.Errorf("%s: image %q, want the skaffold artifact %q", s, c.Image, ImageName(s))
			}
			if u := d.Spec.Template.Spec.SecurityContext.RunAsUser; u == nil || *u != imageUID {
				t.Errorf("%s: runAsUser must be the image's UID %d", s, imageUID)
			}
		}
		for _, d := range deps {
			for _, c := range d.Spec.Template.Spec.Containers {
				if strings.HasPrefix(c.Image, "mcloudtt-") && !artifacts[c.Image] {
					t.Errorf("%s/%s: image %s is not a skaffold artifact", d.Name, c.Name, c.Image)
				}
			}
		}
	})
}

func serviceContainer(t *testing.T, d *appsv1.Deployment, service string) *corev1.Container {
	t.Helper()
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == service {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	t.Errorf("Deployment %s has no container named %s", d.Name, service)
	return nil
}

// Every variable a manifest sets is one the service reads, and the container ports are exactly the
// listeners the configuration opens (defaults, or the values the manifests set).
func TestServiceEnvAndPortsMatchConfig(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, r *repo, out *Rendered) {
		deps := out.Deployments()
		for _, s := range r.services {
			d := deps[s]
			if d == nil {
				continue // reported by TestServiceImagesAreSkaffoldArtifacts
			}
			c := serviceContainer(t, d, s)
			if c == nil {
				continue
			}
			cfg := r.configs[s]
			env, err := out.ContainerEnv(*c)
			if err != nil {
				t.Error(err)
				continue
			}
			for name := range env {
				if _, ok := cfg.Vars[name]; !ok {
					t.Errorf("%s: %s is set in the manifests but services/%s/internal/config has no such field", s, name, s)
				}
			}
			want := map[int]string{}
			for _, v := range cfg.Vars {
				if !strings.HasSuffix(v.Name, "_ADDR") {
					continue
				}
				val, set := env[v.Name]
				if !set {
					val = v.Default
				}
				if p, ok := ListenPort(val); ok {
					want[p] = v.Name
				}
			}
			got := map[int]string{}
			for _, p := range c.Ports {
				got[int(p.ContainerPort)] = p.Name
				if p.Name == "" {
					t.Errorf("%s: container port %d has no name", s, p.ContainerPort)
				}
			}
			for p, v := range want {
				if _, ok := got[p]; !ok {
					t.Errorf("%s: %s listens on %d but the container declares no such port", s, v, p)
				}
			}
			for p, n := range got {
				if _, ok := want[p]; !ok {
					t.Errorf("%s: container port %s (%d) is no listener of the configuration", s, n, p)
				}
			}
			httpPort := 0
			if v, ok := cfg.Vars[cfg.Prefix+"_HTTP_ADDR"]; ok {
				val, set := env[v.Name]
				if !set {
					val = v.Default
				}
				httpPort, _ = ListenPort(val)
			}
			for kind, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("%s: %s probe must be an HTTP GET", s, kind)
					continue
				}
				if n := resolvePort(c, p.HTTPGet.Port); n != httpPort || n == 0 {
					t.Errorf("%s: %s probe on port %v, want the HTTP listener %d", s, kind, p.HTTPGet.Port.String(), httpPort)
				}
				if !r.routes[s][p.HTTPGet.Path] {
					t.Errorf("%s: %s probe path %s is not a route the service registers (it has %v)", s, kind, p.HTTPGet.Path, keys(r.routes[s]))
				}
			}
			// Readiness must be /readyz wherever the service has one: /healthz only says the
			// process is alive, not that it may take traffic.
			if r.routes[s]["/readyz"] && c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("%s: serves /readyz, so readiness must probe it", s)
			}
			if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("%s: liveness must probe /healthz", s)
			}
			// Pods stop within their grace period: the drain (SHUTDOWN_TIMEOUT) plus any preStop.
			drain := durationVar(t, cfg, env, cfg.Prefix+"_SHUTDOWN_TIMEOUT")
			pre := preStopSeconds(c)
			grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
			need := pre + int64(drain/time.Second)
			if grace == nil || *grace < need || *grace > need+15 {
				t.Errorf("%s: terminationGracePeriodSeconds %v, want preStop %ds + drain %s plus at most 15 s", s, deref(grace), pre, drain)
			}
		}
	})
}

func durationVar(t *testing.T, cfg ServiceConfig, env map[string]string, name string) time.Duration {
	t.Helper()
	v, ok := cfg.Vars[name]
	if !ok {
		t.Errorf("%s: config has no %s", cfg.Service, name)
		return 0
	}
	val, set := env[name]
	if !set {
		val = v.Default
	}
	d, err := time.ParseDuration(val)
	if err != nil {
		t.Errorf("%s=%q: %v", name, val, err)
	}
	return d
}

func preStopSeconds(c *corev1.Container) int64 {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return c.Lifecycle.PreStop.Sleep.Seconds
}

func resolvePort(c *corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestBrokerAvailability(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, r *repo, out *Rendered) {
		d := out.Deployments()["broker"]
		if d == nil {
			t.Fatal("no broker Deployment")
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("broker replicas %v, want at least 2", deref(d.Spec.Replicas))
		}
		if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("broker rolling updates must keep every replica until its successor is up (maxUnavailable 0)")
		}
		c := serviceContainer(t, d, "broker")
		if c == nil {
			return
		}
		if preStopSeconds(c) <= 0 {
			t.Error("broker needs a preStop pause so the load balancer stops sending before the drain")
		}
		var id *corev1.EnvVar
		for i := range c.Env {
			if c.Env[i].Name == "BROKER_ID" {
				id = &c.Env[i]
			}
		}
		if id == nil || id.ValueFrom == nil || id.ValueFrom.FieldRef == nil || id.ValueFrom.FieldRef.FieldPath != "metadata.name" {
			t.Error("BROKER_ID must come from the pod name (fieldRef metadata.name)")
		}
		zones := false
		for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
			if tsc.TopologyKey == "topology.kubernetes.io/zone" && selectorMatches(tsc.LabelSelector, d.Spec.Template.Labels) {
				zones = true
			}
		}
		if !zones {
			t.Error("broker replicas must spread across zones")
		}

		hpa, _ := out.Find("HorizontalPodAutoscaler", "broker").(*autoscalingv2.HorizontalPodAutoscaler)
		switch {
		case hpa == nil:
			t.Error("no HorizontalPodAutoscaler broker")
		case hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != "broker":
			t.Errorf("HPA targets %s/%s", hpa.Spec.ScaleTargetRef.Kind, hpa.Spec.ScaleTargetRef.Name)
		case hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2:
			t.Error("HPA minReplicas must be at least 2")
		case len(hpa.Spec.Metrics) == 0 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU:
			t.Error("HPA must scale on CPU")
		}

		pdb, _ := out.Find("PodDisruptionBudget", "broker").(*policyv1.PodDisruptionBudget)
		if pdb == nil || !selectorMatches(pdb.Spec.Selector, d.Spec.Template.Labels) {
			t.Error("no PodDisruptionBudget selecting the broker pods")
		} else if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
			t.Error("the broker PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
		}

		svc, _ := out.Find("Service", "broker").(*corev1.Service)
		if svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			t.Fatal("broker needs a LoadBalancer Service")
		}
		var ports []int
		for _, p := range svc.Spec.Ports {
			ports = append(ports, int(p.Port))
		}
		sort.Ints(ports)
		if !slices.Equal(ports, []int{8883, 8084}) && !slices.Equal(ports, []int{8084, 8883}) {
			t.Errorf("the public broker Service exposes %v, want only 8883 (MQTT over TLS) and 8084 (secure WebSocket)", ports)
		}
		internal, _ := out.Find("Service", "broker-internal").(*corev1.Service)
		if internal == nil || internal.Spec.Type != corev1.ServiceTypeClusterIP || !slices.Equal(svcPorts(internal), []int{1883, 8083}) {
			t.Errorf("plain MQTT and WebSocket need the cluster-internal Service broker-internal (ClusterIP, 1883 and 8083)")
		}
		if out.Overlay == "gke" && net.ParseIP(svc.Spec.LoadBalancerIP) == nil {
			t.Errorf("gke: the broker LoadBalancer must use the reserved address, loadBalancerIP %q", svc.Spec.LoadBalancerIP)
		}
	})
}

// Nothing open that should be closed: no Service puts a plain listener (MQTT 1883, WebSocket 8083)
// or the gateway on an external address, and the network policies admit them only from pods of the
// cluster, while devices on the internet reach MQTT over TLS and secure WebSocket.
func TestPlainListenersStayInsideTheCluster(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, r *repo, out *Rendered) {
		for _, o := range out.OfKind("Service") {
			svc := o.(*corev1.Service)
			if svc.Spec.Type == corev1.ServiceTypeClusterIP || svc.Spec.Type == "" {
				continue
			}
			for _, p := range svc.Spec.Ports {
				if p.Port != 8883 && p.Port != 8084 {
					t.Errorf("Service %s (%s) exposes port %d outside the cluster", svc.Name, svc.Spec.Type, p.Port)
				}
			}
		}
		var pols []*networkingv1.NetworkPolicy
		for _, o := range out.OfKind("NetworkPolicy") {
			pols = append(pols, o.(*networkingv1.NetworkPolicy))
		}
		broker := out.Deployments()["broker"].Spec.Template.Labels
		gateway := out.Deployments()["health-gateway"].Spec.Template.Labels
		internet := peer{ip: net.ParseIP("198.51.100.7")}
		inCluster := peer{labels: map[string]string{nameLabel: "some-client"}}
		for _, c := range []struct {
			to     map[string]string
			port   int
			from   peer
			what   string
			allow  bool
			reason string
		}{
			{broker, 8883, internet, "broker MQTT over TLS", true, "devices connect from the internet"},
			{broker, 8084, internet, "broker secure WebSocket", true, "browsers connect from the internet"},
			{broker, 1883, internet, "broker plain MQTT", false, "passwords would cross the internet in clear"},
			{broker, 8083, internet, "broker plain WebSocket", false, "passwords would cross the internet in clear"},
			{broker, 1883, inCluster, "broker plain MQTT", true, "the gateway probes and in-cluster clients use it"},
			{broker, 8080, internet, "broker HTTP", false, "metrics are for the cluster"},
			{gateway, 8090, internet, "gateway API and page", false, "the cluster view is for operators"},
			{gateway, 8090, inCluster, "gateway API and page", true, "in-cluster tools read it (with its token)"},
		} {
			got := ingressAllowed(pols, c.from, peer{labels: c.to, port: c.port})
			if got != c.allow {
				from := "the internet"
				if c.from.labels != nil {
					from = "a pod of the cluster"
				}
				t.Errorf("%s (%d) from %s: allowed %v, want %v: %s", c.what, c.port, from, got, c.allow, c.reason)
			}
		}
	})
}

// The secrets reach the pods as Secret volumes, never as ConfigMap values: the Redis password (every
// service), Memorystore's CA (gke), the gateway's API token and probe user. Every *_FILE setting
// points into a mounted Secret.
func TestSecretsReachPodsAsSecrets(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, r *repo, out *Rendered) {
		for _, o := range out.OfKind("ConfigMap") {
			cm := o.(*corev1.ConfigMap)
			for k := range cm.Data {
				if strings.HasSuffix(k, "_PASSWORD") || strings.HasSuffix(k, "_TOKEN") || strings.Contains(k, "AUTH_STRING") {
					t.Errorf("ConfigMap %s holds %s: secrets go into Secrets", cm.Name, k)
				}
			}
		}
		deps := out.Deployments()
		for _, s := range r.services {
			d := deps[s]
			if d == nil {
				continue
			}
			c := serviceContainer(t, d, s)
			if c == nil {
				continue
			}
			env, err := out.ContainerEnv(*c)
			if err != nil {
				t.Fatal(err)
			}
			prefix := r.configs[s].Prefix
			secretMounts := map[string]string{} // mount path -> Secret name
			vols := map[string]string{}
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Secret != nil {
					vols[v.Name] = v.Secret.SecretName
				}
			}
			for _, m := range c.VolumeMounts {
				if sec, ok := vols[m.Name]; ok {
					secretMounts[strings.TrimSuffix(m.MountPath, "/")+"/"] = sec
				}
			}
			// A generated Secret (local) carries a hash suffix: redis-auth-5g7c9k2m4d.
			isSecret := func(name, want string) bool {
				return name == want || (strings.HasPrefix(name, want+"-") && out.Find("Secret", name) != nil)
			}
			inSecret := func(name, wantSecret string) {
				t.Helper()
				path := env[name]
				for mount, sec := range secretMounts {
					if strings.HasPrefix(path, mount) && isSecret(sec, wantSecret) {
						if out.Overlay == "local" && out.Find("Secret", sec) == nil {
							t.Errorf("%s: %s is in Secret %s, which the local overlay does not generate", s, name, sec)
						}
						return
					}
				}
				t.Errorf("%s: %s=%q is not in a mounted Secret %s", s, name, path, wantSecret)
			}
			inSecret(prefix+"_REDIS_PASSWORD_FILE", "redis-auth")
			if out.Overlay == "gke" {
				if env[prefix+"_REDIS_TLS"] != "true" {
					t.Errorf("%s: gke must speak TLS to Memorystore (%s_REDIS_TLS=true)", s, prefix)
				}
				inSecret(prefix+"_REDIS_TLS_CA_FILE", "redis-ca")
				if net.ParseIP(env[prefix+"_REDIS_TLS_SERVER_NAME"]) == nil {
					t.Errorf("%s: %s_REDIS_TLS_SERVER_NAME %q must be Memorystore's address (its certificate's name)", s, prefix, env[prefix+"_REDIS_TLS_SERVER_NAME"])
				}
			}
			if s == "health-gateway" {
				inSecret("GATEWAY_API_TOKEN_FILE", "health-gateway-api")
				inSecret("GATEWAY_ADMIN_TOKEN_FILE", "health-gateway-admin")
				for _, e := range c.Env {
					if (e.Name == "GATEWAY_MQTT_USERNAME" || e.Name == "GATEWAY_MQTT_PASSWORD") &&
						(e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || !isSecret(e.ValueFrom.SecretKeyRef.Name, "health-gateway-mqtt")) {
						t.Errorf("%s: %s must come from the Secret health-gateway-mqtt", s, e.Name)
					}
				}
				generated := false
				for _, o := range out.OfKind("Secret") {
					if isSecret(o.(*corev1.Secret).Name, "health-gateway-mqtt") {
						generated = true
					}
				}
				if out.Overlay == "local" && !generated {
					t.Error("the local overlay must generate health-gateway-mqtt, the probe user")
				}
			}
			if s == "broker" {
				// Every replica must encrypt session tickets with the same keys, or a device
				// that comes back to another replica shakes hands in full.
				inSecret("BROKER_TLS_TICKET_KEY_FILE", "broker-tls-tickets")
			}
			if s == "broker" && env["BROKER_ALLOW_ANONYMOUS"] != "false" {
				t.Errorf("broker: anonymous clients must be refused in the cluster")
			}
			if s == "broker" && env["BROKER_PROBE_USERNAME"] == "" {
				t.Errorf("broker: BROKER_PROBE_USERNAME must name the gateway's user")
			}
		}
	})
}

// Each Service selects the pods of one Deployment (or, without a selector, has an EndpointSlice) and
// targets ports those pods declare.
func TestServicesReachTheirPods(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, r *repo, out *Rendered) {
		if out.Find("Service", "health-gateway") == nil {
			t.Error("no health-gateway Service")
		}
		for _, o := range out.OfKind("Service") {
			svc := o.(*corev1.Service)
			if len(svc.Spec.Selector) == 0 {
				found := false
				for _, eo := range out.OfKind("EndpointSlice") {
					es := eo.(*discoveryv1.EndpointSlice)
					if es.Labels[discoveryv1.LabelServiceName] == svc.Name && len(es.Endpoints) > 0 {
						found = true
						for _, ep := range es.Endpoints {
							for _, a := range ep.Addresses {
								if net.ParseIP(a) == nil {
									t.Errorf("EndpointSlice %s: %q is not an IP address", es.Name, a)
								}
							}
						}
					}
				}
				if !found {
					t.Errorf("Service %s has neither a selector nor an EndpointSlice", svc.Name)
				}
				continue
			}
			var target *appsv1.Deployment
			for _, d := range out.Deployments() {
				if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
					if target != nil {
						t.Errorf("Service %s selects both %s and %s", svc.Name, target.Name, d.Name)
					}
					target = d
				}
			}
			if target == nil {
				t.Errorf("Service %s selects no Deployment's pods", svc.Name)
				continue
			}
			for _, p := range svc.Spec.Ports {
				ok := false
				for i := range target.Spec.Template.Spec.Containers {
					c := &target.Spec.Template.Spec.Containers[i]
					if n := resolvePort(c, p.TargetPort); n != 0 && (p.TargetPort.Type == intstr.String || slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return int(cp.ContainerPort) == n })) {
						ok = true
					}
				}
				if !ok {
					t.Errorf("Service %s port %d targets %s, which %s does not declare", svc.Name, p.Port, p.TargetPort.String(), target.Name)
				}
			}
		}
	})
}

// Secrets: local generates the development ones; gke renders none (they are created in the cluster,
// never committed). Every Secret and ConfigMap a pod mounts is accounted for.
func TestSecretsAndConfigMaps(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, r *repo, out *Rendered) {
		secrets := out.OfKind("Secret")
		if out.Overlay == "gke" && len(secrets) > 0 {
			t.Errorf("the gke overlay renders %d Secrets; production secrets are created in the cluster, not committed", len(secrets))
		}
		for name, d := range out.Deployments() {
			for _, v := range d.Spec.Template.Spec.Volumes {
				switch {
				case v.Secret != nil:
					if out.Overlay == "local" && out.Find("Secret", v.Secret.SecretName) == nil {
						t.Errorf("%s mounts Secret %s, which the local overlay does not generate", name, v.Secret.SecretName)
					}
					if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 {
						t.Errorf("%s: Secret volume %s must not be world-readable", name, v.Name)
					}
				case v.ConfigMap != nil:
					if out.Find("ConfigMap", v.ConfigMap.Name) == nil {
						t.Errorf("%s mounts ConfigMap %s, which is not in the overlay", name, v.ConfigMap.Name)
					}
				case v.EmptyDir != nil, v.Projected != nil, v.DownwardAPI != nil:
				default:
					t.Errorf("%s: volume %s is neither a Secret, a ConfigMap nor an emptyDir", name, v.Name)
				}
			}
		}
		for _, o := range out.OfKind("Secret") {
			s := o.(*corev1.Secret)
			if s.Type == corev1.SecretTypeTLS && (len(s.Data[corev1.TLSCertKey]) == 0 || len(s.Data[corev1.TLSPrivateKeyKey]) == 0) {
				t.Errorf("TLS Secret %s lacks tls.crt or tls.key", s.Name)
			}
		}
	})
}

// Only the broker, the adapter and the gateway can open a connection to Redis: the in-cluster pods in
// local, Memorystore's address in gke.
func TestOnlyServicesReachRedis(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, r *repo, out *Rendered) {
		var pols []*networkingv1.NetworkPolicy
		for _, o := range out.OfKind("NetworkPolicy") {
			pols = append(pols, o.(*networkingv1.NetworkPolicy))
		}
		deny, _ := out.Find("NetworkPolicy", "default-deny").(*networkingv1.NetworkPolicy)
		if deny == nil || len(deny.Spec.PodSelector.MatchLabels)+len(deny.Spec.PodSelector.MatchExpressions) != 0 ||
			len(deny.Spec.Ingress)+len(deny.Spec.Egress) != 0 || len(deny.Spec.PolicyTypes) != 2 {
			t.Fatal("no default-deny NetworkPolicy (every pod, Ingress and Egress, no rules)")
		}
		dest := peer{port: 6379}
		if redis := out.Deployments()["redis"]; redis != nil {
			dest.labels = redis.Spec.Template.Labels
		} else {
			// Memorystore: the port its EndpointSlice names (6378 with in-transit encryption).
			svc, _ := out.Find("Service", "redis").(*corev1.Service)
			if svc == nil {
				t.Fatal("no redis Service")
			}
			for _, eo := range out.OfKind("EndpointSlice") {
				es := eo.(*discoveryv1.EndpointSlice)
				if es.Labels[discoveryv1.LabelServiceName] == "redis" && len(es.Endpoints) > 0 && len(es.Endpoints[0].Addresses) > 0 {
					dest.ip = net.ParseIP(es.Endpoints[0].Addresses[0])
					if len(es.Ports) > 0 && es.Ports[0].Port != nil {
						dest.port = int(*es.Ports[0].Port)
					}
				}
			}
			if dest.ip == nil {
				t.Fatal("redis Service has no in-cluster pods and no EndpointSlice address")
			}
		}
		sources := map[string]map[string]string{
			// Any other pod someone runs in the namespace (a debug shell, a future service).
			"(another pod)": {nameLabel: "another", partOfLabel: "mcloudtt"},
		}
		for name, d := range out.Deployments() {
			sources[name] = d.Spec.Template.Labels
		}
		var reach []string
		for name, l := range sources {
			src := peer{labels: l}
			if egressAllowed(pols, src, dest) && (dest.labels == nil || ingressAllowed(pols, src, dest)) {
				reach = append(reach, name)
			}
		}
		sort.Strings(reach)
		if want := []string{"bigquery-adapter", "broker", "health-gateway"}; !slices.Equal(reach, want) {
			t.Errorf("pods that can reach Redis: %v, want %v", reach, want)
		}
	})
}

type peer struct {
	labels map[string]string // a pod in the namespace, or nil
	ip     net.IP            // an address outside the cluster, or nil
	port   int
}

func selectorMatches(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(l))
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, port int) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.Type == intstr.String {
			return true // a named port: assume it may be this one
		}
		end := p.Port.IntValue()
		if p.EndPort != nil {
			end = int(*p.EndPort)
		}
		if port >= p.Port.IntValue() && port <= end {
			return true
		}
	}
	return false
}

func peersMatch(peers []networkingv1.NetworkPolicyPeer, p peer) bool {
	if len(peers) == 0 {
		return true
	}
	for _, np := range peers {
		switch {
		case np.IPBlock != nil:
			_, cidr, err := net.ParseCIDR(np.IPBlock.CIDR)
			if err != nil {
				continue
			}
			if p.ip == nil {
				// Pod addresses are not known here: only a block that covers everything surely
				// includes them.
				if ones, _ := cidr.Mask.Size(); ones == 0 {
					return true
				}
				continue
			}
			if !cidr.Contains(p.ip) {
				continue
			}
			excluded := false
			for _, ex := range np.IPBlock.Except {
				if _, e, err := net.ParseCIDR(ex); err == nil && e.Contains(p.ip) {
					excluded = true
				}
			}
			if !excluded {
				return true
			}
		case np.NamespaceSelector != nil:
			// Another namespace's pods (or all namespaces): they include ours only if empty.
			if p.labels != nil && len(np.NamespaceSelector.MatchLabels)+len(np.NamespaceSelector.MatchExpressions) == 0 &&
				(np.PodSelector == nil || selectorMatches(np.PodSelector, p.labels)) {
				return true
			}
		case np.PodSelector != nil:
			if p.labels != nil && selectorMatches(np.PodSelector, p.labels) {
				return true
			}
		}
	}
	return false
}

func hasType(p *networkingv1.NetworkPolicy, t networkingv1.PolicyType) bool {
	return slices.Contains(p.Spec.PolicyTypes, t)
}

func egressAllowed(pols []*networkingv1.NetworkPolicy, src, dst peer) bool {
	isolated := false
	for _, p := range pols {
		if !hasType(p, networkingv1.PolicyTypeEgress) || !selectorMatches(&p.Spec.PodSelector, src.labels) {
			continue
		}
		isolated = true
		for _, rule := range p.Spec.Egress {
			if portsMatch(rule.Ports, dst.port) && peersMatch(rule.To, dst) {
				return true
			}
		}
	}
	return !isolated
}

func ingressAllowed(pols []*networkingv1.NetworkPolicy, src, dst peer) bool {
	isolated := false
	for _, p := range pols {
		if !hasType(p, networkingv1.PolicyTypeIngress) || !selectorMatches(&p.Spec.PodSelector, dst.labels) {
			continue
		}
		isolated = true
		for _, rule := range p.Spec.Ingress {
			if portsMatch(rule.Ports, dst.port) && peersMatch(rule.From, src) {
				return true
			}
		}
	}
	return !isolated
}

// The gke overlay binds the adapter to a Google service account and nothing else to any.
func TestGKEWorkloadIdentity(t *testing.T) {
	r := mustRepo(t)
	out := r.overlays["gke"]
	for _, o := range out.OfKind("ServiceAccount") {
		sa := o.(*corev1.ServiceAccount)
		gsa := sa.Annotations["iam.gke.io/gcp-service-account"]
		switch {
		case sa.Name == "bigquery-adapter" && !strings.HasSuffix(gsa, ".iam.gserviceaccount.com"):
			t.Errorf("bigquery-adapter ServiceAccount: iam.gke.io/gcp-service-account = %q, want a Google service account", gsa)
		case sa.Name != "bigquery-adapter" && gsa != "":
			t.Errorf("ServiceAccount %s must not act as a Google service account", sa.Name)
		}
	}
	if sa, _ := r.overlays["local"].Find("ServiceAccount", "bigquery-adapter").(*corev1.ServiceAccount); sa == nil || sa.Annotations["iam.gke.io/gcp-service-account"] != "" {
		t.Error("the local overlay's adapter must have no Workload Identity annotation")
	}
}

func TestEnvconfigNaming(t *testing.T) {
	r := mustRepo(t)
	for _, s := range r.services {
		cfg := r.configs[s]
		for _, want := range []string{"_HTTP_ADDR", "_LOG_LEVEL", "_LOG_FORMAT", "_SHUTDOWN_TIMEOUT"} {
			if _, ok := cfg.Vars[cfg.Prefix+want]; !ok {
				t.Errorf("%s: no %s%s among %v", s, cfg.Prefix, want, cfg.Names())
			}
		}
	}
	for _, s := range r.services {
		cfg := r.configs[s]
		for _, want := range []string{"_REDIS_USERNAME", "_REDIS_PASSWORD", "_REDIS_PASSWORD_FILE", "_REDIS_TLS", "_REDIS_TLS_CA_FILE", "_REDIS_TLS_SERVER_NAME", "_REDIS_TLS_CERT_FILE", "_REDIS_TLS_KEY_FILE"} {
			if _, ok := cfg.Vars[cfg.Prefix+want]; !ok {
				t.Errorf("%s: no %s%s (the embedded redisconn.Env) among %v", s, cfg.Prefix, want, cfg.Names())
			}
		}
	}
	if v := r.configs["broker"].Vars["BROKER_MQTT_ADDR"]; v.Default != ":1883" {
		t.Errorf("BROKER_MQTT_ADDR default %q", v.Default)
	}
	for addr, want := range map[string]int{":1883": 1883, "0.0.0.0:8080": 8080, "[::]:9": 9, "redis:6379": 0, "": 0, ":x": 0} {
		if got, _ := ListenPort(addr); got != want {
			t.Errorf("ListenPort(%q) = %d, want %d", addr, got, want)
		}
	}
}

func svcPorts(o runtime.Object) []int {
	var ps []int
	if s, ok := o.(*corev1.Service); ok {
		for _, p := range s.Spec.Ports {
			ps = append(ps, int(p.Port))
		}
	}
	return ps
}

// README's configuration tables document every variable each service reads: by its name, or for the
// settings every service shares, as *_SUFFIX (`*_REDIS_TLS`).
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	r := mustRepo(t)
	readme, err := os.ReadFile(filepath.Join(r.root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	for _, s := range r.services {
		cfg := r.configs[s]
		for _, name := range cfg.Names() {
			if strings.Contains(text, "`"+name+"`") || strings.Contains(text, "`*"+strings.TrimPrefix(name, cfg.Prefix)+"`") {
				continue
			}
			t.Errorf("README documents no %s (services/%s/internal/config)", name, s)
		}
	}
}

// The in-cluster Redis of the local overlay keeps an append-only file synced every second, lets a
// replica fall 256 MB behind on pub/sub (the bus needs more than the 32 MB default) and requires
// the password every service is given.
func TestLocalRedisSettings(t *testing.T) {
	r := mustRepo(t)
	d := r.overlays["local"].Deployments()["redis"]
	if d == nil {
		t.Fatal("the local overlay has no redis Deployment")
	}
	c := d.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync always", "--client-output-buffer-limit pubsub 256mb 64mb 60", "--requirepass $(REDIS_PASSWORD)"} {
		if !strings.Contains(args, want) {
			t.Errorf("redis args %q lack %q", args, want)
		}
	}
	ok := false
	for _, e := range c.Env {
		if e.Name == "REDIS_PASSWORD" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
			strings.HasPrefix(e.ValueFrom.SecretKeyRef.Name, "redis-auth") && e.ValueFrom.SecretKeyRef.Key == "password" {
			ok = true
		}
	}
	if !ok {
		t.Error("REDIS_PASSWORD must come from the Secret redis-auth (key password), as the services' password file does")
	}
}
