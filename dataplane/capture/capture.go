package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// Chain is the nat chain that holds the inbound redirect.
const Chain = "BULKHEAD_INBOUND"

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
}

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

// Install sets up the redirect in the current network namespace. It is
// idempotent: the chain's content is replaced and the jump exists once.
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

// Remove deletes the jump and the chain from the current network namespace.
// Absent rules are not an error.
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
	if _, err := run(ctx, chainRules(cfg, f.v6), f.restore, "-w", "--noflush"); err != nil {
		return err
	}
	present, err := f.hasJump(ctx)
	if err != nil {
		return err
	}
	if present {
		return nil
	}
	_, err = run(ctx, "", f.name, append([]string{"-w", "-t", "nat", "-A"}, jump...)...)
	return err
}

func (f family) remove(ctx context.Context) error {
	// Read the nat table rather than probe with -S/-C: for an absent
	// chain, iptables variants answer with different messages and codes.
	out, err := run(ctx, "", f.name, "-w", "-t", "nat", "-S")
	if err != nil {
		return err
	}
	exists, jumps := false, 0
	jumpRule := "-A " + strings.Join(jump, " ")
	for l := range strings.Lines(out) {
		switch strings.TrimSpace(l) {
		case "-N " + Chain:
			exists = true
		case jumpRule:
			jumps++
		}
	}
	for range jumps {
		if _, err := run(ctx, "", f.name, append([]string{"-w", "-t", "nat", "-D"}, jump...)...); err != nil {
			return err
		}
	}
	if !exists {
		return nil
	}
	if _, err := run(ctx, "", f.name, "-w", "-t", "nat", "-F", Chain); err != nil {
		return err
	}
	_, err = run(ctx, "", f.name, "-w", "-t", "nat", "-X", Chain)
	return err
}

// hasJump reports whether PREROUTING jumps to the chain. `iptables -C`
// exits 1 when the rule is not there.
func (f family) hasJump(ctx context.Context) (bool, error) {
	_, err := run(ctx, "", f.name, append([]string{"-w", "-t", "nat", "-C"}, jump...)...)
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
	rule("-p tcp -j REDIRECT --to-ports " + strconv.Itoa(int(cfg.ProxyPort)))
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
