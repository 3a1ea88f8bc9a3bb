package infra

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Each service's Dockerfile: multi-stage, a static binary, an Alpine final stage holding only that
// binary (and the CA certificates it installs), a non-root numeric USER, and EXPOSE equal to the
// ports the Deployment declares.
func TestDockerfiles(t *testing.T) {
	r := mustRepo(t)
	for _, s := range r.services {
		t.Run(s, func(t *testing.T) {
			stages, global, err := ParseDockerfile(filepath.Join(r.root, "services", s, "Dockerfile"))
			if err != nil {
				t.Fatal(err)
			}
			if len(stages) < 2 {
				t.Fatalf("%d stages, want a build stage and a final stage", len(stages))
			}
			args := map[string]string{}
			for _, in := range global {
				if in.Cmd == "ARG" {
					k, v, _ := strings.Cut(in.Args, "=")
					args[k] = v
				}
			}
			expand := func(s string) string {
				for k, v := range args {
					s = strings.ReplaceAll(s, "${"+k+"}", v)
				}
				return s
			}
			build, final := stages[0], stages[len(stages)-1]
			if !strings.HasPrefix(expand(build.From), "golang:") {
				t.Errorf("build stage FROM %s, want golang:", build.From)
			}
			if img := expand(final.From); !strings.HasPrefix(img, "alpine:") || strings.HasSuffix(img, ":latest") {
				t.Errorf("final stage FROM %s, want a pinned alpine:<version>", img)
			}
			static := false
			for _, in := range build.Instructions {
				if (in.Cmd == "ENV" || in.Cmd == "ARG") && strings.Contains(in.Args, "CGO_ENABLED=0") {
					static = true
				}
				if in.Cmd == "RUN" && strings.Contains(in.Args, "CGO_ENABLED=0") {
					static = true
				}
			}
			if !static {
				t.Error("the build stage must set CGO_ENABLED=0 (a static binary for Alpine's musl)")
			}
			var copies, user, entry, expose []string
			for _, in := range final.Instructions {
				switch in.Cmd {
				case "COPY", "ADD":
					copies = append(copies, in.Args)
				case "USER":
					user = append(user, in.Args)
				case "ENTRYPOINT":
					entry = append(entry, in.Args)
				case "EXPOSE":
					expose = append(expose, strings.Fields(in.Args)...)
				case "RUN":
					if !strings.Contains(in.Args, "apk add --no-cache ca-certificates") {
						t.Errorf("final stage RUN %q: only the CA certificates and the user are added", in.Args)
					}
				}
			}
			bin := "/usr/local/bin/" + s
			if len(copies) != 1 || !strings.HasPrefix(copies[0], "--from=") || !strings.HasSuffix(copies[0], " "+bin) {
				t.Errorf("final stage copies %q, want only the binary to %s", copies, bin)
			}
			if len(user) != 1 {
				t.Fatalf("final stage USER %q, want one", user)
			}
			uid, err := strconv.Atoi(strings.SplitN(user[0], ":", 2)[0])
			if err != nil || uid == 0 {
				t.Errorf("USER %s, want a numeric non-root UID (runAsNonRoot cannot check a name)", user[0])
			} else if uid != imageUID {
				t.Errorf("USER %d, want %d as the manifests' runAsUser", uid, imageUID)
			}
			var ep []string
			if len(entry) != 1 || json.Unmarshal([]byte(entry[0]), &ep) != nil || !slices.Equal(ep, []string{bin}) {
				t.Errorf("ENTRYPOINT %q, want [%q] in exec form", entry, bin)
			}
			d := r.overlays["local"].Deployments()[s]
			if d == nil {
				t.Fatal("no Deployment")
			}
			var ports []string
			for _, c := range d.Spec.Template.Spec.Containers {
				if c.Name == s {
					for _, p := range c.Ports {
						ports = append(ports, strconv.Itoa(int(p.ContainerPort)))
					}
				}
			}
			sort.Strings(ports)
			sort.Strings(expose)
			if !slices.Equal(ports, expose) {
				t.Errorf("EXPOSE %v, the Deployment declares %v", expose, ports)
			}
		})
	}
}

// skaffold.yaml: one artifact per service, built from the repository root with the service's
// Dockerfile; profiles local and gke render the overlays; port-forwards reach the broker and the
// gateway on ports their Services expose.
func TestSkaffold(t *testing.T) {
	r := mustRepo(t)
	sk := r.skaffold
	if sk.APIVersion != "skaffold/v4beta13" || sk.Kind != "Config" {
		t.Errorf("apiVersion %q kind %q", sk.APIVersion, sk.Kind)
	}
	var images []string
	for _, a := range sk.Build.Artifacts {
		images = append(images, a.Image)
		svc := strings.TrimPrefix(a.Image, "mcloudtt-")
		if a.Context != "." || a.Docker == nil || a.Docker.Dockerfile != "services/"+svc+"/Dockerfile" {
			t.Errorf("artifact %s: context %q dockerfile %v, want . and services/%s/Dockerfile", a.Image, a.Context, a.Docker, svc)
		}
	}
	var want []string
	for _, s := range r.services {
		want = append(want, ImageName(s))
	}
	sort.Strings(images)
	if !slices.Equal(images, want) {
		t.Errorf("artifacts %v, want one per service directory: %v", images, want)
	}
	profiles := map[string]SkaffoldProfile{}
	for _, p := range sk.Profiles {
		profiles[p.Name] = p
	}
	for _, o := range Overlays {
		p, ok := profiles[o]
		if !ok || p.Manifests.Kustomize == nil || !slices.Equal(p.Manifests.Kustomize.Paths, []string{"deploy/overlays/" + o}) {
			t.Errorf("profile %s must render deploy/overlays/%s", o, o)
		}
	}
	if p := profiles["gke"]; p.Build == nil || p.Build.Local == nil || p.Build.Local.Push == nil || !*p.Build.Local.Push {
		t.Error("profile gke must push the images (to --default-repo)")
	}
	if sk.Deploy.Kubectl == nil {
		t.Error("deploy.kubectl missing")
	}
	forwarded := map[string][]int{}
	for _, pf := range sk.PortForward {
		if !strings.EqualFold(pf.ResourceType, "service") || pf.Namespace != namespace {
			t.Errorf("port-forward %+v: want a Service in %s", pf, namespace)
		}
		forwarded[pf.ResourceName] = append(forwarded[pf.ResourceName], pf.Port)
	}
	for svc, ports := range map[string][]int{"broker": {8883, 8084}, "broker-internal": {1883, 8083}, "health-gateway": {8090}} {
		for _, p := range ports {
			if !slices.Contains(forwarded[svc], p) {
				t.Errorf("no port-forward to %s:%d", svc, p)
			}
		}
	}
	for _, o := range Overlays {
		for name, ports := range forwarded {
			svc := r.overlays[o].Find("Service", name)
			if svc == nil {
				t.Errorf("overlay %s: port-forward to missing Service %s", o, name)
				continue
			}
			for _, p := range ports {
				if !slices.ContainsFunc(svcPorts(svc), func(sp int) bool { return sp == p }) {
					t.Errorf("overlay %s: Service %s has no port %d", o, name, p)
				}
			}
		}
	}
	if _, err := os.Stat(filepath.Join(r.root, "skaffold.yaml")); err != nil {
		t.Fatal(err)
	}
}
