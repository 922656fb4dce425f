package v1alpha1

import (
	"strings"
	"testing"
)

const fqdnSample = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: app, namespace: demo}
spec:
  egress:
  - name: to-api
    peers: [{fqdn: PEER}]
    ports: [{port: 443, protocol: tls}]
`

func TestFQDNPeer(t *testing.T) {
	for _, tc := range []struct {
		name, peer, want string // want "": valid
	}{
		{"exact", "fqdn: api.example.com", ""},
		{"final dot", "fqdn: api.example.com.", ""},
		{"wildcard", `fqdn: "*.example.com"`, ""},
		{"single label", "fqdn: localhost", ""},
		{"upper case", "fqdn: API.example.com", "is not a DNS name"},
		{"star alone", `fqdn: "*"`, "is not a DNS name"},
		{"star inside", `fqdn: "api.*.com"`, "is not a DNS name"},
		{"bare star dot", `fqdn: "*."`, "is not a DNS name"},
		{"empty label", "fqdn: api..com", "is not a DNS name"},
		{"space", `fqdn: "api example.com"`, "is not a DNS name"},
		{"with cidr", "fqdn: api.example.com, cidr: 198.18.0.0/24", "fqdn excludes"},
		{"with segment", "fqdn: api.example.com, segment: db", "fqdn excludes"},
		{"too long", "fqdn: " + strings.Repeat("a.", 127) + "com", "is not a DNS name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := UnmarshalYAML([]byte(strings.Replace(fqdnSample, "fqdn: PEER", tc.peer, 1)))
			if err != nil {
				t.Fatal(err)
			}
			err = ps[0].Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFQDNPeerIsEgressOnly(t *testing.T) {
	ps, err := UnmarshalYAML([]byte(strings.Replace(strings.Replace(fqdnSample, "egress:", "ingress:", 1), "fqdn: PEER", "fqdn: api.example.com", 1)))
	if err != nil {
		t.Fatal(err)
	}
	err = ps[0].Validate()
	if err == nil || !strings.Contains(err.Error(), "spec.ingress[0].peers[0].fqdn: fqdn peers are for egress rules only") {
		t.Errorf("Validate() = %v, want the ingress fqdn refused", err)
	}
}

func TestNormalizeFQDN(t *testing.T) {
	r := Rule{Peers: []Peer{{FQDN: "Api.Example.COM."}, {FQDN: "*.example.org"}, {CIDR: "198.18.0.0/24"}}}
	r.Normalize()
	if got := r.Peers[0].FQDN + " " + r.Peers[1].FQDN + " " + r.Peers[2].CIDR; got != "api.example.com *.example.org 198.18.0.0/24" {
		t.Errorf("normalized peers = %q", got)
	}
}
