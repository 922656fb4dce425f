package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSetInfrastructure(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	in := Infrastructure{
		ProbeSources:   []string{"198.19.10.0/24"},
		MetricsSources: []string{"198.19.20.5/32"},
		MetricsPorts:   []int32{9090},
		DNSServers:     []string{"198.18.255.10/32"},
	}
	drained(s)
	if err := s.SetInfrastructure(in); err != nil {
		t.Fatal(err)
	}
	if !drained(s) {
		t.Error("no change signalled")
	}
	in.ProbeSources[0] = "changed by the caller"
	if got := s.Settings().Infrastructure.ProbeSources[0]; got != "198.19.10.0/24" {
		t.Errorf("the store kept the caller's slice: %q", got)
	}
	data, err := os.ReadFile(filepath.Join(dir, settingsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "infrastructure:\n  dnsServers:\n  - 198.18.255.10/32\n") {
		t.Errorf("settings.yaml:\n%s", data)
	}
	if diff := cmp.Diff(s.Settings(), open(t, dir).Settings()); diff != "" {
		t.Errorf("reopened settings differ (-want +got):\n%s", diff)
	}

	if err := s.SetInfrastructure(Infrastructure{DNSServers: []string{"198.18.255.10"}}); err == nil || !strings.Contains(err.Error(), "dnsServers[0]") {
		t.Errorf("a bare address: %v, want a dnsServers[0] error", err)
	}

	// Nothing configured: the file does not mention it.
	if err := s.SetInfrastructure(Infrastructure{}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, settingsFile)); strings.Contains(string(data), "infrastructure") {
		t.Errorf("settings.yaml names empty allowances:\n%s", data)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, settingsFile), []byte("infrastructure:\n  metricsPorts: [70000]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bad, nil); err == nil || !strings.Contains(err.Error(), "metricsPorts[0]") {
		t.Errorf("Open with a bad port: %v", err)
	}
}
