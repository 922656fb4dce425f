package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Chain is the nat chain that holds the inbound redirect.
const Chain = "BULKHEAD_INBOUND"

// OutboundChain is the nat chain that holds the outbound redirect.
const OutboundChain = "BULKHEAD_OUTBOUND"

// Defaults of the outbound capture (bulkhead-proxy init --outbound).
const (
	// DefaultOutboundPort is the proxy's outbound listener.
	DefaultOutboundPort = 15001
	// DefaultDNSPort is the proxy's DNS port (UDP).
	DefaultDNSPort = 15053
	// DefaultEnvoyPort is an Envoy sidecar's virtual inbound listener
	// (Config.EnvoyPort).
	DefaultEnvoyPort = 15016
	// DefaultMark is the SO_MARK of the proxy's own sockets. Packets of a
	// socket with this exact mark are not redirected; it needs no extra
	// user in the pod, but setting SO_MARK needs CAP_NET_ADMIN.
	DefaultMark = 0xb4d
)

// maxExcludes bounds ExcludePorts and ExcludeSources.
const maxExcludes = 256

// Config says where to redirect and what to leave alone.
type Config struct {
	// ProxyPort is the proxy's inbound listener (15006). Required.
	ProxyPort uint16
	// ExcludePorts are destination ports not redirected (the proxy's admin
	// port, health checks that must reach the workload unjudged, …).
	ExcludePorts []uint16
	// ExcludeSources are source address blocks not redirected. Optional;
	// IPv4 blocks go into iptables, IPv6 blocks into ip6tables.
	ExcludeSources []netip.Prefix
	// EnvoyPorts are inbound destination ports redirected to EnvoyPort
	// (an Envoy sidecar's virtual inbound listener, 15016) rather than to
	// ProxyPort. Optional; none may be excluded.
	EnvoyPorts []uint16
	// EnvoyPort is where EnvoyPorts go (DefaultEnvoyPort). Required with
	// EnvoyPorts, ignored without.
	EnvoyPort uint16
	// Outbound captures the workload's outbound traffic too. The zero
	// value captures none (inbound only), and Install then removes an
	// outbound capture left by an earlier Install.
	Outbound Outbound
}

// Outbound says where the workload's outbound traffic goes: new TCP
// connections to the proxy's outbound listener, DNS over UDP to its DNS
// port. The proxy's own sockets are left alone, recognised by their owner
// (ExcludeUID: the proxy runs as a user of its own) or by their Mark, as
// are loopback, excluded ports and excluded destinations (the control
// plane's address, when the proxy's control-plane connection is neither
// marked nor its own user's).
type Outbound struct {
	// Port is the proxy's outbound TCP listener (DefaultOutboundPort).
	// 0: outbound TCP is not captured.
	Port uint16
	// DNSPort is the proxy's DNS port (DefaultDNSPort): UDP to port 53
	// goes there. 0: DNS over UDP is not captured. (DNS over TCP is
	// outbound TCP.)
	DNSPort uint16
	// Mark is the SO_MARK of the proxy's own sockets (DefaultMark);
	// packets with exactly this mark are not redirected. 0: none. Setting
	// a mark needs CAP_NET_ADMIN in the proxy's container.
	Mark uint32
	// ExcludeUID is the user id the proxy (and any other sidecar that
	// must not be captured, e.g. Envoy) runs as: packets of sockets this
	// user owns are not redirected (`-m owner --uid-owner`). It needs no
	// capability in the proxy's container, which is why the injected
	// sidecar uses it. Nil: none. Mark or ExcludeUID is required when
	// Port or DNSPort is set (else the proxy's own traffic would loop).
	ExcludeUID *uint32
	// ExcludePorts are TCP destination ports not redirected.
	ExcludePorts []uint16
	// ExcludeDestinations are destination address blocks not redirected
	// (TCP and DNS).
	ExcludeDestinations []netip.Prefix
}

// Enabled reports whether anything outbound is captured.
func (o *Outbound) Enabled() bool { return o.Port != 0 || o.DNSPort != 0 }

// Validate reports what makes the configuration unusable.
func (c *Config) Validate() error {
	if c.ProxyPort == 0 {
		return errors.New("capture: config: no proxy port")
	}
	if len(c.ExcludePorts) > maxExcludes || len(c.ExcludeSources) > maxExcludes {
		return fmt.Errorf("capture: config: more than %d exclusions", maxExcludes)
	}
	for _, p := range c.ExcludePorts {
		if p == 0 {
			return errors.New("capture: config: excluded port 0")
		}
		if p == c.ProxyPort {
			return fmt.Errorf("capture: config: proxy port %d excluded", p)
		}
	}
	for _, p := range c.ExcludeSources {
		if !p.IsValid() {
			return fmt.Errorf("capture: config: invalid excluded source %v", p)
		}
	}
	if err := c.validateEnvoy(); err != nil {
		return err
	}
	return c.Outbound.validate(c.ProxyPort)
}

func (c *Config) validateEnvoy() error {
	if len(c.EnvoyPorts) == 0 {
		return nil
	}
	if len(c.EnvoyPorts) > maxExcludes {
		return fmt.Errorf("capture: config: more than %d envoy ports", maxExcludes)
	}
	switch c.EnvoyPort {
	case 0:
		return errors.New("capture: config: envoy ports without an envoy port")
	case c.ProxyPort:
		return fmt.Errorf("capture: config: envoy port %d is the proxy port", c.EnvoyPort)
	}
	for i, p := range c.EnvoyPorts {
		switch {
		case p == 0:
			return errors.New("capture: config: envoy port list has port 0")
		case slices.Contains(c.ExcludePorts, p):
			return fmt.Errorf("capture: config: port %d is both excluded and sent to envoy", p)
		case slices.Contains(c.EnvoyPorts[:i], p):
			return fmt.Errorf("capture: config: envoy port %d listed twice", p)
		}
	}
	return nil
}

func (o *Outbound) validate(inbound uint16) error {
	if !o.Enabled() {
		if o.Mark != 0 || o.ExcludeUID != nil || len(o.ExcludePorts) > 0 || len(o.ExcludeDestinations) > 0 {
			return errors.New("capture: config: outbound exclusions or mark without an outbound or DNS port")
		}
		return nil
	}
	if o.Mark == 0 && o.ExcludeUID == nil {
		return errors.New("capture: config: outbound capture needs the proxy's mark or its excluded uid (its own traffic would loop)")
	}
	if o.ExcludeUID != nil && *o.ExcludeUID == math.MaxUint32 {
		return errors.New("capture: config: excluded uid 4294967295 is not a user id")
	}
	for _, p := range []uint16{o.Port, o.DNSPort} {
		if p != 0 && p == inbound {
			return fmt.Errorf("capture: config: outbound port %d is the inbound proxy port", p)
		}
	}
	if len(o.ExcludePorts) > maxExcludes || len(o.ExcludeDestinations) > maxExcludes {
		return fmt.Errorf("capture: config: more than %d outbound exclusions", maxExcludes)
	}
	for _, p := range o.ExcludePorts {
		if p == 0 {
			return errors.New("capture: config: excluded outbound port 0")
		}
	}
	for _, p := range o.ExcludeDestinations {
		if !p.IsValid() {
			return fmt.Errorf("capture: config: invalid excluded destination %v", p)
		}
	}
	return nil
}

// family is one address family's iptables commands.
type family struct {
	name    string // "iptables"
	restore string // "iptables-restore"
	v6      bool
}

var families = []family{
	{name: "iptables", restore: "iptables-restore"},
	{name: "ip6tables", restore: "ip6tables-restore", v6: true},
}

// jump is the PREROUTING rule, without the -A/-C/-D verb.
var jump = []string{"PREROUTING", "-p", "tcp", "-j", Chain}

// outJump is the OUTPUT rule of the outbound chain.
var outJump = []string{"OUTPUT", "-j", OutboundChain}

// Install sets up the redirect in the current network namespace. It is
// idempotent: the chains' content is replaced and each jump exists once; an
// outbound capture left by an earlier Install is removed when cfg has none.
// IPv6 is skipped when ip6tables is missing or has no nat support.
func Install(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	for _, f := range families {
		err := f.install(ctx, cfg)
		if f.v6 && unsupported(err) {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes the jumps and the chains (inbound and outbound) from the
// current network namespace. Absent rules are not an error.
func Remove(ctx context.Context) error {
	for _, f := range families {
		err := f.remove(ctx)
		if f.v6 && unsupported(err) {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (f family) install(ctx context.Context, cfg Config) error {
	if err := f.installChain(ctx, chainRules(cfg, f.v6), jump); err != nil {
		return err
	}
	if !cfg.Outbound.Enabled() {
		return f.removeChain(ctx, OutboundChain, outJump)
	}
	return f.installChain(ctx, outboundRules(cfg.Outbound, f.v6), outJump)
}

// installChain replaces a chain's content with rules (iptables-restore
// input) and adds its jump j unless it is there.
func (f family) installChain(ctx context.Context, rules string, j []string) error {
	if _, err := run(ctx, rules, f.restore, "-w", "--noflush"); err != nil {
		return err
	}
	present, err := f.hasJump(ctx, j)
	if err != nil {
		return err
	}
	if present {
		return nil
	}
	_, err = run(ctx, "", f.name, append([]string{"-w", "-t", "nat", "-A"}, j...)...)
	return err
}

func (f family) remove(ctx context.Context) error {
	if err := f.removeChain(ctx, OutboundChain, outJump); err != nil {
		return err
	}
	return f.removeChain(ctx, Chain, jump)
}

// removeChain deletes every jump j and the chain.
func (f family) removeChain(ctx context.Context, chain string, j []string) error {
	// Read the nat table rather than probe with -S/-C: for an absent
	// chain, iptables variants answer with different messages and codes.
	out, err := run(ctx, "", f.name, "-w", "-t", "nat", "-S")
	if err != nil {
		return err
	}
	exists, jumps := false, 0
	jumpRule := "-A " + strings.Join(j, " ")
	for l := range strings.Lines(out) {
		switch strings.TrimSpace(l) {
		case "-N " + chain:
			exists = true
		case jumpRule:
			jumps++
		}
	}
	for range jumps {
		if _, err := run(ctx, "", f.name, append([]string{"-w", "-t", "nat", "-D"}, j...)...); err != nil {
			return err
		}
	}
	if !exists {
		return nil
	}
	if _, err := run(ctx, "", f.name, "-w", "-t", "nat", "-F", chain); err != nil {
		return err
	}
	_, err = run(ctx, "", f.name, "-w", "-t", "nat", "-X", chain)
	return err
}

// hasJump reports whether the jump rule j is there. `iptables -C` exits 1
// when the rule is not there.
func (f family) hasJump(ctx context.Context, j []string) (bool, error) {
	_, err := run(ctx, "", f.name, append([]string{"-w", "-t", "nat", "-C"}, j...)...)
	var ee *cmdError
	if errors.As(err, &ee) && ee.exitCode == 1 {
		return false, nil
	}
	return err == nil, err
}

// chainRules is the iptables-restore input that replaces the chain.
func chainRules(cfg Config, v6 bool) string {
	var b strings.Builder
	b.WriteString("*nat\n:" + Chain + " - [0:0]\n-F " + Chain + "\n")
	rule := func(s string) { b.WriteString("-A " + Chain + " " + s + "\n") }
	rule("-i lo -j RETURN")
	for _, p := range cfg.ExcludePorts {
		rule("-p tcp --dport " + strconv.Itoa(int(p)) + " -j RETURN")
	}
	for _, p := range cfg.ExcludeSources {
		if p.Addr().Unmap().Is4() != v6 {
			rule("-s " + unmapPrefix(p).String() + " -j RETURN")
		}
	}
	for _, p := range cfg.EnvoyPorts {
		rule("-p tcp --dport " + strconv.Itoa(int(p)) + " -j REDIRECT --to-ports " + strconv.Itoa(int(cfg.EnvoyPort)))
	}
	rule("-p tcp -j REDIRECT --to-ports " + strconv.Itoa(int(cfg.ProxyPort)))
	b.WriteString("COMMIT\n")
	return b.String()
}

// outboundRules is the iptables-restore input that replaces the outbound
// chain.
func outboundRules(o Outbound, v6 bool) string {
	var b strings.Builder
	b.WriteString("*nat\n:" + OutboundChain + " - [0:0]\n-F " + OutboundChain + "\n")
	rule := func(s string) { b.WriteString("-A " + OutboundChain + " " + s + "\n") }
	if o.ExcludeUID != nil {
		rule("-m owner --uid-owner " + strconv.FormatUint(uint64(*o.ExcludeUID), 10) + " -j RETURN")
	}
	if o.Mark != 0 {
		rule("-m mark --mark 0x" + strconv.FormatUint(uint64(o.Mark), 16) + " -j RETURN")
	}
	rule("-o lo -j RETURN")
	for _, p := range o.ExcludePorts {
		rule("-p tcp --dport " + strconv.Itoa(int(p)) + " -j RETURN")
	}
	for _, p := range o.ExcludeDestinations {
		if p.Addr().Unmap().Is4() != v6 {
			rule("-d " + unmapPrefix(p).String() + " -j RETURN")
		}
	}
	if o.DNSPort != 0 {
		rule("-p udp --dport 53 -j REDIRECT --to-ports " + strconv.Itoa(int(o.DNSPort)))
	}
	if o.Port != 0 {
		rule("-p tcp -j REDIRECT --to-ports " + strconv.Itoa(int(o.Port)))
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix into its IPv4 form.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4In6() {
		return p.Masked()
	}
	bits := max(p.Bits()-96, 0)
	return netip.PrefixFrom(p.Addr().Unmap(), bits).Masked()
}

// cmdError is a failed command with what it printed.
type cmdError struct {
	cmd      string
	exitCode int // -1 when it did not run or was killed
	stderr   string
	err      error
}

func (e *cmdError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("capture: %s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("capture: %s: %v: %s", e.cmd, e.err, e.stderr)
}

func (e *cmdError) Unwrap() error { return e.err }

// run executes name with args, feeding it stdin when not empty, and returns
// its standard output.
func run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		const maxStderr = 2048
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > maxStderr {
			msg = msg[:maxStderr] + "…"
		}
		return "", &cmdError{cmd: name + " " + strings.Join(args, " "), exitCode: code, stderr: msg, err: err}
	}
	return stdout.String(), nil
}

// unsupported reports whether err says the host cannot do this family at
// all: the command is missing, or the kernel lacks the table or protocol.
func unsupported(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, exec.ErrNotFound) {
		return true
	}
	var ee *cmdError
	if !errors.As(err, &ee) {
		return false
	}
	s := strings.ToLower(ee.stderr)
	for _, m := range []string{"not supported", "table does not exist", "do you need to insmod", "can't initialize"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}
