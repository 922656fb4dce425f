package envoy

import (
	"encoding/json"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

func TestBootstrapTLS(t *testing.T) {
	o := BootstrapOptions{Node: "api.demo", ControlPlane: "198.18.0.1:15010", TLS: &BootstrapTLS{Dir: "/var/run/bulkhead/certs"}}
	b, err := Bootstrap(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(b); err != nil {
		t.Fatalf("Envoy bootstrap with TLS: %v", err)
	}
	ts := b.GetStaticResources().GetClusters()[0].GetTransportSocket()
	var up tlsv3.UpstreamTlsContext
	if ts.GetName() != "envoy.transport_sockets.tls" || ts.GetTypedConfig().UnmarshalTo(&up) != nil {
		t.Fatalf("transport socket %v", ts)
	}
	c := up.GetCommonTlsContext()
	if up.GetSni() != "198.18.0.1" || c.GetTlsCertificates()[0].GetCertificateChain().GetFilename() != "/var/run/bulkhead/certs/tls.crt" ||
		c.GetTlsCertificates()[0].GetPrivateKey().GetFilename() != "/var/run/bulkhead/certs/tls.key" ||
		c.GetValidationContext().GetTrustedCa().GetFilename() != "/var/run/bulkhead/certs/ca.crt" {
		t.Errorf("TLS context %v", &up)
	}

	g, err := GRPCBootstrap(o)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Servers []struct {
			Creds []struct {
				Type   string            `json:"type"`
				Config map[string]string `json:"config"`
			} `json:"channel_creds"`
		} `json:"xds_servers"`
	}
	if err := json.Unmarshal(g, &doc); err != nil {
		t.Fatal(err)
	}
	cr := doc.Servers[0].Creds
	if len(cr) != 1 || cr[0].Type != "tls" || cr[0].Config["certificate_file"] != "/var/run/bulkhead/certs/tls.crt" ||
		cr[0].Config["private_key_file"] != "/var/run/bulkhead/certs/tls.key" || cr[0].Config["ca_certificate_file"] != "/var/run/bulkhead/certs/ca.crt" {
		t.Errorf("gRPC channel creds %s", g)
	}
	o.TLS.Dir = "relative"
	if _, err := GRPCBootstrap(o); err == nil {
		t.Error("a relative certificate folder was accepted")
	}
}
