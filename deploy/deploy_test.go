package deploy_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/inject"
	"github.com/bulkhead-io/bulkhead/test/kube"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite manifests/bulkhead.yaml from the chart")

// helmArgs render the plain manifests.
var helmArgs = []string{"template", "bulkhead", "helm/bulkhead", "--namespace", "bulkhead-system", "--kube-version", "1.37.2"}

// helm returns the path of helm, built by hack/helm.sh (once; cached).
func helm(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../hack/helm.sh").Output()
	if err != nil {
		t.Fatalf("hack/helm.sh: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "helm")
}

func render(t *testing.T, h string, extra ...string) []byte {
	t.Helper()
	cmd := exec.Command(h, append(slices.Clone(helmArgs), extra...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %v: %v: %s", extra, err, stderr.String())
	}
	return out
}

// The plain manifests are the chart rendered with its default values.
func TestManifestsAreTheChart(t *testing.T) {
	h := helm(t)
	if out, err := exec.Command(h, "lint", "--strict", "--kube-version", "1.37.2", "helm/bulkhead").CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	got := render(t, h)
	const file = "manifests/bulkhead.yaml"
	head := []byte("# Generated from helm/bulkhead with its default values by\n# `go test ./deploy -run TestManifestsAreTheChart -update`. Do not edit.\n")
	if *update {
		if err := os.WriteFile(file, append(head, got...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(head, got...), want) {
		t.Fatalf("%s differs from the chart's rendering: run go test ./deploy -run TestManifestsAreTheChart -update", file)
	}
	cm := string(render(t, h, "--set", "certManager.enabled=true"))
	for _, s := range []string{"cert-manager.io/inject-ca-from: bulkhead-system/bulkhead-webhook", "kind: Certificate", "--inject-cert-dir=", "name: bulkhead-ca", "--ca-cert=/etc/bulkhead/ca/tls.crt"} {
		if !strings.Contains(cm, s) {
			t.Errorf("certManager.enabled=true: rendering lacks %q", s)
		}
	}
	if strings.Contains(cm, "bulkhead-webhook-ca") {
		t.Errorf("certManager.enabled=true: the control plane still gets the CA Secret")
	}
	off := string(render(t, h, "--set", "injection.enabled=false", "--set", "controlPlane.replicas=3", "--set", "defaultMode=protect"))
	for _, s := range []string{"MutatingWebhookConfiguration", "--inject-addr"} {
		if strings.Contains(off, s) {
			t.Errorf("injection.enabled=false: rendering has %q", s)
		}
	}
	for _, s := range []string{"replicas: 3", "--default-mode=protect"} {
		if !strings.Contains(off, s) {
			t.Errorf("values not rendered: no %q", s)
		}
	}
}

// The injection settings the chart renders are what the control plane
// parses, and every flag the Deployment passes is one the binaries know.
func TestChartMatchesBinaries(t *testing.T) {
	h := helm(t)
	for _, values := range [][]string{nil, {"--set", "injection.mtls=false", "--set", "injection.proxy.excludeInboundPorts={8081,9000}", "--set", "injection.outbound=false"}} {
		docs := strings.Split(string(render(t, h, values...)), "\n---\n")
		found := false
		for _, d := range docs {
			var cm struct {
				Kind     string                `json:"kind"`
				Metadata struct{ Name string } `json:"metadata"`
				Data     map[string]string     `json:"data"`
			}
			if err := yaml.Unmarshal([]byte(d), &cm); err != nil {
				t.Fatal(err)
			}
			if cm.Kind != "ConfigMap" || cm.Metadata.Name != "bulkhead-inject" {
				continue
			}
			found = true
			s, err := inject.ParseSettings([]byte(cm.Data["settings.yaml"]))
			if err != nil {
				t.Fatalf("values %v: %v", values, err)
			}
			if s.ProxyImage == "" || s.XDSAddr != "bulkhead-controlplane.bulkhead-system.svc:15010" || s.ProxyResources.Limits.Memory().IsZero() {
				t.Errorf("values %v: settings %+v", values, s)
			}
			if outbound := s.Outbound == nil || *s.Outbound; outbound != (values == nil) {
				t.Errorf("values %v: outbound %v", values, outbound)
			}
			if values != nil && (s.MTLS || !slices.Equal(s.ExcludeInboundPorts, []uint16{8081, 9000})) {
				t.Errorf("values %v: settings %+v", values, s)
			}
		}
		if !found {
			t.Fatalf("values %v: no ConfigMap bulkhead-inject", values)
		}
	}
	// The control plane's flags.
	bin := filepath.Join(t.TempDir(), "bulkhead-controlplane")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/bulkhead-controlplane").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	help, _ := exec.Command(bin, "-h").CombinedOutput() // flag's -h exits 0 or 2
	all := string(render(t, h)) + string(render(t, h, "--set", "certManager.enabled=true", "--set", "injection.mtls=false")) +
		string(render(t, h, "--set", "trust.caSecret=operators-ca"))
	flagRE := regexp.MustCompile(`(?m)^\s+- (--[a-z-]+)`)
	flags := flagRE.FindAllStringSubmatch(all, -1)
	if len(flags) < 10 {
		t.Fatalf("only %d flags found in the Deployments", len(flags))
	}
	for _, m := range flags {
		name := strings.TrimPrefix(m[1], "--")
		if !strings.Contains(string(help), "  -"+name+" ") && !strings.Contains(string(help), "  -"+name+"\n") {
			t.Errorf("the Deployment passes %s, which bulkhead-controlplane does not know", m[1])
		}
	}
}

// The manifests and chart renderings are accepted by a real API server
// (server-side apply, dry run) with the CRDs installed.
func TestApply(t *testing.T) {
	h := helm(t)
	env := kube.Start(t)
	env.RunKubectl(t, "", "apply", "--server-side", "-f", "manifests/namespace.yaml")
	out := env.RunKubectl(t, "", "apply", "--server-side", "--dry-run=server", "-f", "manifests/bulkhead.yaml")
	for _, want := range []string{
		"deployment.apps/bulkhead-controlplane serverside-applied (server dry run)",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/bulkhead-inject serverside-applied (server dry run)",
		"poddisruptionbudget.policy/bulkhead-controlplane serverside-applied (server dry run)",
		"clusterrole.rbac.authorization.k8s.io/bulkhead-controlplane serverside-applied (server dry run)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply: no %q in\n%s", want, out)
		}
	}
	// A rendering with other values, through standard input.
	r := render(t, h, "--set", "injection.enabled=false", "--set", "controlPlane.replicas=3")
	env.RunKubectl(t, string(r), "apply", "--server-side", "--dry-run=server", "-f", "-")
	// The CRD the chart carries is the generated one.
	a, err := os.ReadFile("crds/bulkhead.io_segmentpolicies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("helm/bulkhead/crds/bulkhead.io_segmentpolicies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("helm/bulkhead/crds differs from crds/")
	}
}

// Every metric the dashboard queries is one the code exports.
func TestDashboardMetrics(t *testing.T) {
	data, err := os.ReadFile("grafana/bulkhead.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	metric := regexp.MustCompile(`bulkhead_[a-z0-9_]+`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			names := metric.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no bulkhead metric", p.Title, tg.Expr)
			}
			for _, m := range names {
				n++
				base := m
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(m, s); ok && exported[b] {
						base = b
					}
				}
				if !exported[base] {
					t.Errorf("panel %q: metric %s is not exported by the code", p.Title, m)
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d metric references in the dashboard", n)
	}
}

// exportedMetrics returns the metric names given as Name: "bulkhead_…" in
// the repository's Go code (tests excluded).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	name := regexp.MustCompile(`Name:\s+"(bulkhead_[a-z0-9_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "hack") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d metrics in the code", len(out))
	}
	return out
}
