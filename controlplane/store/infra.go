package store

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// MaxInfraEntries bounds each list of Infrastructure.
const MaxInfraEntries = 64

// Infrastructure configures the infrastructure allowances: rules the
// compiler adds to every segment so that protect mode does not break a
// cluster's plumbing. Each kind applies only when its sources are given;
// the zero value adds nothing.
type Infrastructure struct {
	// Disabled drops every allowance, whatever the lists say.
	Disabled bool `json:"disabled,omitempty"`
	// ProbeSources are the addresses kubelets probe from (the nodes'):
	// allowed into every declared port of every workload.
	ProbeSources []string `json:"probeSources,omitempty"`
	// MetricsSources are the metrics scrapers' addresses: allowed into
	// MetricsPorts.
	MetricsSources []string `json:"metricsSources,omitempty"`
	// MetricsPorts are the ports scraped.
	MetricsPorts []int32 `json:"metricsPorts,omitempty"`
	// DNSServers are the cluster resolvers: every workload may send DNS
	// to them on port 53.
	DNSServers []string `json:"dnsServers,omitempty"`
}

// Validate reports every address block that does not parse, every port out
// of range and every list longer than MaxInfraEntries.
func (in Infrastructure) Validate() error {
	var errs []error
	for _, l := range []struct {
		name  string
		cidrs []string
	}{{"probeSources", in.ProbeSources}, {"metricsSources", in.MetricsSources}, {"dnsServers", in.DNSServers}} {
		if len(l.cidrs) > MaxInfraEntries {
			errs = append(errs, fmt.Errorf("%s: %d entries, at most %d", l.name, len(l.cidrs), MaxInfraEntries))
			continue
		}
		for i, c := range l.cidrs {
			if _, err := netip.ParsePrefix(c); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %q is not a CIDR", l.name, i, c))
			}
		}
	}
	if len(in.MetricsPorts) > MaxInfraEntries {
		errs = append(errs, fmt.Errorf("metricsPorts: %d entries, at most %d", len(in.MetricsPorts), MaxInfraEntries))
	} else {
		for i, p := range in.MetricsPorts {
			switch {
			case p < 1 || p > 65535:
				errs = append(errs, fmt.Errorf("metricsPorts[%d]: %d is not a port (1-65535)", i, p))
			case slices.Index(in.MetricsPorts, p) < i:
				errs = append(errs, fmt.Errorf("metricsPorts[%d]: port %d listed twice", i, p))
			}
		}
	}
	return errors.Join(errs...)
}

func (in Infrastructure) clone() Infrastructure {
	return Infrastructure{
		Disabled:       in.Disabled,
		ProbeSources:   slices.Clone(in.ProbeSources),
		MetricsSources: slices.Clone(in.MetricsSources),
		MetricsPorts:   slices.Clone(in.MetricsPorts),
		DNSServers:     slices.Clone(in.DNSServers),
	}
}
