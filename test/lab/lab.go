// Package lab builds a small network of workloads on one machine for the
// demo and the end-to-end tests: one network namespace per workload, joined
// by a Linux bridge that lives in a namespace of its own (so the machine's
// br_netfilter and iptables never see the lab's traffic), plus a veth that
// puts the machine's own namespace on the same bridge so that a control plane
// running there is reachable from the workloads. Nothing is routed off the
// lab: workloads have no default route, and the machine's end does not
// forward.
//
// A Lab needs root. Every name it creates starts with its prefix, so Sweep
// can remove what a crashed run left behind; New calls it first.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Addresses a lab may use: the benchmarking block, never routed on the
// Internet (RFC 2544).
var allowed = netip.MustParsePrefix("198.18.0.0/15")

const (
	// MaxPrefix bounds Options.Prefix so that "<prefix>-h" fits IFNAMSIZ.
	MaxPrefix = 10
	// MaxHostName bounds a host's name: it names the bridge port in the
	// switch namespace.
	MaxHostName = 12

	bridgeName   = "br0"
	runningMark  = ".running" // in the temp dir of a lab not closed yet
	rootPortName = "root"     // the switch's end of the machine's veth
	netnsDir     = "/var/run/netns"
)

// reservedHosts are names of the switch namespace and its links.
var reservedHosts = []string{"sw", rootPortName, bridgeName, "lo"}

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	hostRE   = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
)

// Options configure a Lab.
type Options struct {
	// Prefix starts every namespace and link name of the lab: short
	// (at most MaxPrefix), lower-case letters and digits, unique per test
	// package, e.g. "bh3".
	Prefix string
	// Subnet is the lab's network, inside 198.18.0.0/15, e.g.
	// 198.18.3.0/24. The machine gets its first address, hosts the next
	// ones in the order they are added.
	Subnet netip.Prefix
	// Log receives what the lab does. Nil: discarded.
	Log *slog.Logger
	// Grace is how long Close and Proc.Stop wait after SIGTERM before
	// SIGKILL. Zero: 3s.
	Grace time.Duration
	// KeepDir leaves the temp dir with the processes' output in place on
	// Close, for a look after the fact.
	KeepDir bool
}

// Lab is a network of namespaces. Its methods are safe for concurrent use.
type Lab struct {
	opts    Options
	log     *slog.Logger
	dir     string // temp dir for process output
	rootIf  string // the machine's end of its veth
	swName  string // switch namespace
	root    *Host
	mu      sync.Mutex
	hosts   []*Host
	procs   []*Proc
	nextLog int
	closed  bool
}

// New builds the lab's switch namespace with its bridge and the machine's
// veth with the subnet's first address. It removes leftovers of a previous
// run with the same prefix first. On error, whatever it made is removed.
func New(ctx context.Context, opts Options) (*Lab, error) {
	if err := validate(opts); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Grace <= 0 {
		opts.Grace = 3 * time.Second
	}
	l := &Lab{
		opts:   opts,
		log:    opts.Log.With("lab", opts.Prefix),
		rootIf: opts.Prefix + "-h",
		swName: opts.Prefix + "-sw",
	}
	l.root = &Host{lab: l, name: "host", addr: l.hostAddr(0)}
	if err := Sweep(opts.Prefix); err != nil {
		return nil, fmt.Errorf("sweep leftovers: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkSubnetFree(opts.Subnet); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", tempPrefix(opts.Prefix))
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	l.dir = dir
	if err := os.WriteFile(filepath.Join(dir, runningMark), nil, 0o644); err != nil {
		return nil, errors.Join(fmt.Errorf("temp dir: %w", err), l.Close())
	}
	if err := l.build(); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	l.log.Info("lab up", "subnet", opts.Subnet, "host", l.HostAddr(), "switch", l.swName)
	return l, nil
}

func validate(o Options) error {
	if len(o.Prefix) == 0 || len(o.Prefix) > MaxPrefix || !prefixRE.MatchString(o.Prefix) {
		return fmt.Errorf("lab prefix %q: want 1 to %d lower-case letters and digits, starting with a letter", o.Prefix, MaxPrefix)
	}
	if !o.Subnet.IsValid() || !o.Subnet.Addr().Is4() {
		return fmt.Errorf("lab subnet %v: want an IPv4 prefix", o.Subnet)
	}
	if o.Subnet.Bits() < allowed.Bits() || o.Subnet.Bits() > 29 || !allowed.Contains(o.Subnet.Addr()) {
		return fmt.Errorf("lab subnet %v: want a /%d to /29 inside %v", o.Subnet, allowed.Bits(), allowed)
	}
	if o.Subnet.Masked() != o.Subnet {
		return fmt.Errorf("lab subnet %v: host bits set (want %v)", o.Subnet, o.Subnet.Masked())
	}
	return nil
}

// checkSubnetFree refuses a subnet that an interface of the machine already
// has an address in (another lab, or a real network).
func checkSubnetFree(p netip.Prefix) error {
	var addrs []netlink.Addr
	var err error
	for range 5 { // a dump interrupted by links changing meanwhile: again
		addrs, err = netlink.AddrList(nil, netlink.FAMILY_V4)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if ok && p.Contains(ip) {
			return fmt.Errorf("lab subnet %v: address %v is already in use on interface %d (another lab with the same subnet?)", p, ip, a.LinkIndex)
		}
	}
	return nil
}

// hostAddr returns the subnet's address number n+1: 0 is the machine's.
func (l *Lab) hostAddr(n int) netip.Addr {
	a := l.opts.Subnet.Addr()
	for range n + 1 {
		a = a.Next()
	}
	return a
}

func (l *Lab) build() error {
	sw, err := newNamedNS(l.swName)
	if err != nil {
		return fmt.Errorf("switch namespace %s: %w", l.swName, err)
	}
	defer sw.Close()
	h, err := netlink.NewHandleAt(sw)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", l.swName, err)
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge %s in %s: %w", bridgeName, l.swName, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s up: %w", bridgeName, err)
	}
	if err := setLinkUpByName(h, "lo"); err != nil {
		return fmt.Errorf("lo up in %s: %w", l.swName, err)
	}

	// The machine's veth: one end here with the subnet's first address,
	// the other created directly in the switch namespace on the bridge.
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: l.rootIf},
		PeerName:      rootPortName,
		PeerNamespace: netlink.NsFd(int(sw)),
	}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("veth %s: %w", l.rootIf, err)
	}
	if err := attach(h, rootPortName, br); err != nil {
		return err
	}
	// Nothing received from the lab is forwarded by the machine.
	fwd := "/proc/sys/net/ipv4/conf/" + l.rootIf + "/forwarding"
	if err := os.WriteFile(fwd, []byte("0"), 0o644); err != nil {
		return fmt.Errorf("sysctl %s: %w", fwd, err)
	}
	// No IPv6 chatter on the lab (best effort: IPv6 may be off).
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+l.rootIf+"/disable_ipv6", []byte("1"), 0o644)
	link, err := netlink.LinkByName(l.rootIf)
	if err != nil {
		return fmt.Errorf("veth %s: %w", l.rootIf, err)
	}
	if err := netlink.AddrAdd(link, addrOf(l.HostAddr(), l.opts.Subnet.Bits())); err != nil {
		return fmt.Errorf("address %v on %s: %w", l.HostAddr(), l.rootIf, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("veth %s up: %w", l.rootIf, err)
	}
	return nil
}

// attach puts the switch's end of a veth on the bridge and brings it up.
func attach(h *netlink.Handle, port string, br netlink.Link) error {
	p, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("bridge port %s: %w", port, err)
	}
	if err := h.LinkSetMaster(p, br); err != nil {
		return fmt.Errorf("bridge port %s on %s: %w", port, bridgeName, err)
	}
	if err := h.LinkSetUp(p); err != nil {
		return fmt.Errorf("bridge port %s up: %w", port, err)
	}
	return nil
}

func setLinkUpByName(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkSetUp(link)
}

func addrOf(a netip.Addr, bits int) *netlink.Addr {
	return &netlink.Addr{IPNet: netipToIPNet(netip.PrefixFrom(a, bits))}
}

// AddHost adds a workload namespace "<prefix>-<name>" whose eth0 is on the
// bridge with the subnet's next free address, lo up and no default route.
// name is lower-case letters and digits, at most MaxHostName long.
func (l *Lab) AddHost(name string) (*Host, error) {
	if len(name) == 0 || len(name) > MaxHostName || !hostRE.MatchString(name) || slices.Contains(reservedHosts, name) {
		return nil, fmt.Errorf("lab host name %q: want 1 to %d lower-case letters and digits, starting with a letter, not one of %v", name, MaxHostName, reservedHosts)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("lab is closed")
	}
	if slices.ContainsFunc(l.hosts, func(h *Host) bool { return h.name == name }) {
		return nil, fmt.Errorf("lab host %q exists", name)
	}
	addr := l.hostAddr(len(l.hosts) + 1)
	if !l.opts.Subnet.Contains(addr.Next()) { // keep the broadcast address free
		return nil, fmt.Errorf("lab subnet %v is full", l.opts.Subnet)
	}
	h := &Host{lab: l, name: name, ns: l.opts.Prefix + "-" + name, addr: addr}
	if err := l.buildHost(h); err != nil {
		// Leave nothing behind: the namespace takes its veth with it.
		_ = deleteNS(h.ns)
		return nil, fmt.Errorf("lab host %s: %w", name, err)
	}
	l.hosts = append(l.hosts, h)
	l.log.Info("host up", "host", name, "netns", h.ns, "addr", addr)
	return h, nil
}

func (l *Lab) buildHost(h *Host) error {
	ns, err := newNamedNS(h.ns)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", h.ns, err)
	}
	defer ns.Close()
	sw, err := netns.GetFromName(l.swName)
	if err != nil {
		return fmt.Errorf("switch namespace %s: %w", l.swName, err)
	}
	defer sw.Close()
	swh, err := netlink.NewHandleAt(sw)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", l.swName, err)
	}
	defer swh.Close()
	hh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", h.ns, err)
	}
	defer hh.Close()

	br, err := swh.LinkByName(bridgeName)
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: h.name},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := swh.LinkAdd(v); err != nil {
		return fmt.Errorf("veth %s: %w", h.name, err)
	}
	if err := attach(swh, h.name, br); err != nil {
		return err
	}
	if err := setLinkUpByName(hh, "lo"); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	eth, err := hh.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0: %w", err)
	}
	if err := hh.AddrAdd(eth, addrOf(h.addr, l.opts.Subnet.Bits())); err != nil {
		return fmt.Errorf("address %v on eth0: %w", h.addr, err)
	}
	if err := hh.LinkSetUp(eth); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	return nil
}

// HostAddr is the machine's address on the lab, the subnet's first: what
// workloads use to reach a control plane running on the machine.
func (l *Lab) HostAddr() netip.Addr { return l.hostAddr(0) }

// Root is the machine's own namespace as a Host: its commands run without
// switching namespaces, its address is HostAddr, and the processes it
// starts are stopped by Close like the others.
func (l *Lab) Root() *Host { return l.root }

// Host returns the host added with that name, or nil.
func (l *Lab) Host(name string) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

// Hosts returns the hosts in the order they were added.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.hosts)
}

// Subnet is the lab's network.
func (l *Lab) Subnet() netip.Prefix { return l.opts.Subnet }

// Prefix is the lab's name prefix.
func (l *Lab) Prefix() string { return l.opts.Prefix }

// Dir is the lab's temp dir, where process output goes; callers may keep
// their own files there too. Close removes it unless Options.KeepDir; Sweep
// removes that of a lab that was never closed.
func (l *Lab) Dir() string { return l.dir }

// Close stops every process the lab started (SIGTERM, then SIGKILL after
// the grace period) and waits for them, then deletes every host namespace,
// the switch namespace with its bridge, the machine's veth and the temp dir,
// in reverse order of creation. It is safe to call more than once; later
// calls return nil.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := slices.Clone(l.procs)
	hosts := slices.Clone(l.hosts)
	l.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop() })
	}
	wg.Wait()

	var errs []error
	for _, h := range slices.Backward(hosts) {
		if err := deleteNS(h.ns); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", h.ns, err))
		}
	}
	if err := deleteNS(l.swName); err != nil {
		errs = append(errs, fmt.Errorf("delete namespace %s: %w", l.swName, err))
	}
	if err := deleteLink(l.rootIf); err != nil {
		errs = append(errs, err)
	}
	// The dir first: the sweep below takes a marked dir for a leftover.
	switch {
	case l.dir == "":
	case l.opts.KeepDir:
		if err := os.Remove(filepath.Join(l.dir, runningMark)); err != nil {
			errs = append(errs, fmt.Errorf("temp dir: %w", err))
		}
	default:
		if err := os.RemoveAll(l.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", l.dir, err))
		}
	}
	// Anything else with the prefix (a host whose build failed half way).
	if err := Sweep(l.opts.Prefix); err != nil {
		errs = append(errs, err)
	}
	l.log.Info("lab down", "errors", len(errs))
	return errors.Join(errs...)
}

// newNamedNS creates a named network namespace (like `ip netns add`) and
// returns a handle to it. The namespace switch happens on a locked thread
// that switches back; a thread that could not switch back is discarded.
func newNamedNS(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{netns.None(), fmt.Errorf("current namespace: %w", err)}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			// Leave the thread locked: it ends with this goroutine.
			if ns.IsOpen() {
				ns.Close()
			}
			_ = netns.DeleteNamed(name)
			ch <- result{netns.None(), errors.Join(err, fmt.Errorf("switch back: %w", serr))}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ns, err}
	}()
	r := <-ch
	return r.ns, r.err
}
