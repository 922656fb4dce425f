package conventions

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/bulkhead-io/bulkhead"

type pkg struct {
	path    string
	imports []string
	doc     string
	name    string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Name}}\t{{.Doc}}\t{{join .Imports \" \"}}", module+"/...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 4)
		if len(f) != 4 {
			t.Fatalf("go list: odd line %q", sc.Text())
		}
		pkgs = append(pkgs, pkg{path: f[0], name: f[1], doc: f[2], imports: strings.Fields(f[3])})
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages; is the module root right?", len(pkgs))
	}
	return pkgs
}

// sharedProtocolPkgs are the packages under protocols/ that are not
// protocols but vocabulary or lexers shared by several of them.
var sharedProtocolPkgs = map[string]bool{"protocols/l7": true, "protocols/sqlverb": true}

// protocolBuildsOn lists the protocols that may import another protocol:
// HTTP/2's h2c upgrade begins as an HTTP/1.1 exchange (http2 runs http1's
// parser until the 101), and both judge paths in http1's normal form.
var protocolBuildsOn = map[string]string{"protocols/http2": "protocols/http1"}

func rel(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "/") }

// TestImportGraph enforces DESIGN.md: protocols import nothing of ours but
// protocols/l7 (and protocols/all the protocols; see protocolBuildsOn); the data plane imports
// nothing of the control plane but its api, and nothing of Kubernetes;
// internal/ holds standard-library-only helpers both planes share.
func TestImportGraph(t *testing.T) {
	for _, p := range listPackages(t) {
		r := rel(p.path)
		for _, imp := range p.imports {
			ir := rel(imp)
			ours := strings.HasPrefix(imp, module)
			switch {
			case strings.HasPrefix(r, "protocols/"):
				if ours && !strings.HasPrefix(ir, "protocols/") {
					t.Errorf("%s imports %s: protocols/ may import only protocols/", r, ir)
				}
				if ours && r != "protocols/all" && !sharedProtocolPkgs[ir] && !strings.HasPrefix(r, ir) && protocolBuildsOn[r] != ir {
					t.Errorf("%s imports %s: a protocol may import only protocols/l7 and the shared lexers", r, ir)
				}
			case strings.HasPrefix(r, "dataplane/"):
				if ours && !strings.HasPrefix(ir, "dataplane/") && !strings.HasPrefix(ir, "protocols/") && !strings.HasPrefix(ir, "controlplane/api/bulkheadv1") && !strings.HasPrefix(ir, "internal/") {
					t.Errorf("%s imports %s: the data plane may import only dataplane/, protocols/, controlplane/api/bulkheadv1 and internal/", r, ir)
				}
				if strings.HasPrefix(imp, "k8s.io/") || strings.HasPrefix(imp, "sigs.k8s.io/") {
					t.Errorf("%s imports %s: the data plane must not depend on Kubernetes", r, imp)
				}
			case strings.HasPrefix(r, "internal/"):
				// Leaf helpers both planes share: the standard library only.
				if ours {
					t.Errorf("%s imports %s: internal/ packages may import only the standard library", r, ir)
				}
			case strings.HasPrefix(r, "controlplane/"):
				if ours && (strings.HasPrefix(ir, "dataplane/") || strings.HasPrefix(ir, "cmd/") || strings.HasPrefix(ir, "test/")) {
					t.Errorf("%s imports %s: the control plane must not import the data plane, cmd or tests", r, ir)
				}
			}
			if r == "protocols/l7" && ours {
				t.Errorf("protocols/l7 imports %s: it may import only the standard library", ir)
			}
		}
	}
}

// TestPackageDocs: every package has a doc comment that starts with its name.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.doc == "" {
			t.Errorf("%s: no package doc comment", rel(p.path))
			continue
		}
		if p.name != "main" && !strings.HasPrefix(p.doc, "Package "+p.name) {
			t.Errorf("%s: doc comment should start with %q, got %q", rel(p.path), "Package "+p.name, p.doc)
		}
	}
}
