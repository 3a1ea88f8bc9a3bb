// Command imagekit assembles a service image offline, the way its Dockerfile's final stage does, and
// inspects image tarballs. scripts/infra-test.sh uses it where no container engine runs: the
// Dockerfiles stay the production path (Alpine base, built in CI with a registry); this checks that
// the same binary, user, entrypoint and ports make a runnable image.
//
//	imagekit base -cacerts /etc/ssl/certs/ca-certificates.crt -uid 10001 -gid 10001 -o base.tar
//	imagekit build -base base.tar -binary bin/broker -dest /usr/local/bin/broker \
//	    -entrypoint '["/usr/local/bin/broker"]' -user 10001:10001 -expose "1883 8080" -tag mcloudtt-broker:offline -o broker.tar
//	imagekit inspect broker.tar
//
// The base holds the CA certificates and /etc/passwd and /etc/group entries for the non-root user,
// nothing else; inspect prints the config and the file list as JSON and fails if the entrypoint is
// not an executable, statically linked file in the image.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr, 2)
	}
	var err error
	switch os.Args[1] {
	case "-h", "-help", "--help", "help":
		usage(os.Stdout, 0)
	case "base":
		err = runBase(os.Args[2:])
	case "build":
		err = runBuild(os.Args[2:])
	case "inspect":
		err = runInspect(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "imagekit: unknown subcommand %q\n", os.Args[1])
		usage(os.Stderr, 2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagekit:", err)
		os.Exit(1)
	}
}

func usage(w io.Writer, code int) {
	fmt.Fprintln(w, "usage: imagekit base|build|inspect [flags]  (see the package comment; imagekit SUBCOMMAND -h lists its flags)")
	os.Exit(code)
}

// epoch keeps layers reproducible: the same inputs give the same digests.
var epoch = time.Unix(0, 0).UTC()

type file struct {
	name string
	mode int64
	data []byte
	dir  bool
}

func layer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: epoch, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
			h.Name = strings.TrimSuffix(f.name, "/") + "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !f.dir {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

func runBase(args []string) error {
	fs := flag.NewFlagSet("base", flag.ExitOnError)
	cacerts := fs.String("cacerts", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to install as /etc/ssl/certs/ca-certificates.crt")
	uid := fs.Int("uid", 10001, "UID of the non-root user")
	gid := fs.Int("gid", 10001, "GID of its group")
	user := fs.String("name", "mcloudtt", "user and group name")
	out := fs.String("o", "", "output tarball")
	tag := fs.String("tag", "mcloudtt-base:offline", "image name in the tarball")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("base: -o is required")
	}
	if *uid == 0 {
		return errors.New("base: the user must not be root")
	}
	ca, err := os.ReadFile(*cacerts)
	if err != nil {
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/nonexistent:/sbin/nologin\n", *user, *uid, *gid, *user)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", *user, *gid)
	l, err := layer([]file{
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/ssl", mode: 0o755, dir: true},
		{name: "etc/ssl/certs", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{name: "tmp", mode: 0o1777, dir: true},
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", "amd64", v1.Time{Time: epoch}
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.User = fmt.Sprintf("%d:%d", *uid, *gid)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	return write(img, *tag, *out)
}

func runBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	base := fs.String("base", "", "base image tarball (imagekit base)")
	binary := fs.String("binary", "", "the service binary")
	dest := fs.String("dest", "", "its path in the image")
	entrypoint := fs.String("entrypoint", "", "ENTRYPOINT, exec form JSON as in the Dockerfile")
	user := fs.String("user", "", "USER uid:gid as in the Dockerfile")
	expose := fs.String("expose", "", "EXPOSE ports, space-separated, as in the Dockerfile")
	tag := fs.String("tag", "", "image name")
	out := fs.String("o", "", "output tarball")
	_ = fs.Parse(args)
	for n, v := range map[string]string{"base": *base, "binary": *binary, "dest": *dest, "entrypoint": *entrypoint, "user": *user, "tag": *tag, "o": *out} {
		if v == "" {
			return fmt.Errorf("build: -%s is required", n)
		}
	}
	var ep []string
	if err := json.Unmarshal([]byte(*entrypoint), &ep); err != nil || len(ep) == 0 {
		return fmt.Errorf("build: -entrypoint %q is not an exec-form JSON array", *entrypoint)
	}
	img, err := tarball.ImageFromPath(*base, nil)
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	var files []file
	dir := strings.TrimPrefix(path.Dir(*dest), "/")
	for d, parts := "", strings.Split(dir, "/"); len(parts) > 0; parts = parts[1:] {
		d = path.Join(d, parts[0])
		files = append(files, file{name: d, mode: 0o755, dir: true})
	}
	files = append(files, file{name: strings.TrimPrefix(*dest, "/"), mode: 0o755, data: bin})
	l, err := layer(files)
	if err != nil {
		return err
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Config.Entrypoint = ep
	cf.Config.Cmd = nil
	cf.Config.User = *user
	cf.Config.ExposedPorts = map[string]struct{}{}
	for _, p := range strings.Fields(*expose) {
		if _, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp")); err != nil {
			return fmt.Errorf("build: bad port %q", p)
		}
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	return write(img, *tag, *out)
}

func write(img v1.Image, tag, out string) error {
	ref, err := name.NewTag(tag, name.WithDefaultRegistry("local.invalid"))
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, img)
}

// Report is what inspect prints.
type Report struct {
	Digest       string            `json:"digest"`
	Entrypoint   []string          `json:"entrypoint"`
	User         string            `json:"user"`
	ExposedPorts []string          `json:"exposedPorts"`
	Env          []string          `json:"env"`
	Files        map[string]string `json:"files"` // path -> mode and size
	Layers       int               `json:"layers"`
	Static       bool              `json:"static"`
}

func runInspect(args []string) error {
	if len(args) != 1 {
		return errors.New("inspect: one image tarball")
	}
	img, err := tarball.ImageFromPath(args[0], nil)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	dg, err := img.Digest()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	rep := Report{Digest: dg.String(), Entrypoint: cf.Config.Entrypoint, User: cf.Config.User, Env: cf.Config.Env,
		Files: map[string]string{}, Layers: len(layers)}
	for p := range cf.Config.ExposedPorts {
		rep.ExposedPorts = append(rep.ExposedPorts, p)
	}
	sort.Strings(rep.ExposedPorts)
	contents := map[string][]byte{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		rep.Files[p] = fmt.Sprintf("%s %d", h.FileInfo().Mode().String(), h.Size)
		if len(cf.Config.Entrypoint) > 0 && p == cf.Config.Entrypoint[0] {
			if h.Mode&0o111 == 0 {
				return fmt.Errorf("inspect: entrypoint %s is not executable (%o)", p, h.Mode)
			}
			if contents[p], err = io.ReadAll(tr); err != nil {
				return err
			}
		}
	}
	if len(cf.Config.Entrypoint) == 0 {
		return errors.New("inspect: no entrypoint")
	}
	bin, ok := contents[cf.Config.Entrypoint[0]]
	if !ok {
		return fmt.Errorf("inspect: entrypoint %s is not in the image", cf.Config.Entrypoint[0])
	}
	if rep.Static, err = static(bin); err != nil {
		return fmt.Errorf("inspect: %s: %w", cf.Config.Entrypoint[0], err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// static reports whether an ELF executable needs no dynamic loader (CGO_ENABLED=0).
func static(b []byte) (bool, error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false, err
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
