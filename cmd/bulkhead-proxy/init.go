package main

import (
	"fmt"
	"math"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/bulkhead-io/bulkhead/dataplane/capture"
)

// initCmd is `bulkhead-proxy init`: it installs the redirect (capture).
func initCmd() *cobra.Command {
	var (
		ic             capture.Config
		outbound       bool
		outExclude     []uint
		outExcludeNets []string
		exclude        []uint
		envoyPorts     []uint
		excludeUID     int64
	)
	c := &cobra.Command{
		Use:   "init",
		Short: "Redirect inbound TCP (and outbound TCP and DNS) to the proxy (iptables; needs NET_ADMIN)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if ic.ExcludePorts, err = ports("--exclude-ports", exclude); err != nil {
				return err
			}
			if ic.EnvoyPorts, err = ports("--envoy-ports", envoyPorts); err != nil {
				return err
			}
			if !outbound {
				ic.Outbound = capture.Outbound{}
				return capture.Install(cmd.Context(), ic)
			}
			if cmd.Flags().Changed("exclude-uid") {
				if excludeUID < 0 || excludeUID >= math.MaxUint32 {
					return fmt.Errorf("--exclude-uid: %d is not a user id", excludeUID)
				}
				u := uint32(excludeUID)
				ic.Outbound.ExcludeUID = &u
				if !cmd.Flags().Changed("mark") {
					ic.Outbound.Mark = 0 // the uid replaces the default mark
				}
			}
			if ic.Outbound.ExcludePorts, err = ports("--outbound-exclude-ports", outExclude); err != nil {
				return err
			}
			for _, s := range outExcludeNets {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("--outbound-exclude-cidrs: %w", err)
				}
				ic.Outbound.ExcludeDestinations = append(ic.Outbound.ExcludeDestinations, p)
			}
			return capture.Install(cmd.Context(), ic)
		},
	}
	f := c.Flags()
	f.Uint16Var(&ic.ProxyPort, "proxy-port", 15006, "the proxy's inbound port")
	f.UintSliceVar(&exclude, "exclude-ports", []uint{15090}, "inbound ports not redirected (keep the admin port in the list)")
	f.UintSliceVar(&envoyPorts, "envoy-ports", nil, "inbound ports redirected to --envoy-port (an Envoy sidecar) instead of the proxy; none may be excluded")
	f.Uint16Var(&ic.EnvoyPort, "envoy-port", capture.DefaultEnvoyPort, "Envoy's virtual inbound listener, the target of --envoy-ports")
	f.BoolVar(&outbound, "outbound", false, "also redirect outbound TCP and UDP/53 (the proxy's own traffic, by --exclude-uid or --mark, and loopback excepted)")
	f.Uint16Var(&ic.Outbound.Port, "outbound-port", capture.DefaultOutboundPort, "the proxy's outbound port (0: outbound TCP not redirected)")
	f.Uint16Var(&ic.Outbound.DNSPort, "dns-port", capture.DefaultDNSPort, "the proxy's DNS port (0: UDP/53 not redirected)")
	f.Int64Var(&excludeUID, "exclude-uid", -1, "user id of the proxy: its sockets are not redirected (needs no capability in the proxy; then --mark defaults to 0, none)")
	f.Uint32Var(&ic.Outbound.Mark, "mark", capture.DefaultMark, "SO_MARK of the proxy's own sockets, not redirected (0: none; needs --exclude-uid)")
	f.UintSliceVar(&outExclude, "outbound-exclude-ports", nil, "outbound TCP ports not redirected")
	f.StringSliceVar(&outExcludeNets, "outbound-exclude-cidrs", nil, "outbound destinations not redirected (CIDRs)")
	return c
}
