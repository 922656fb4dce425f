package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// RunTimeout bounds Host.Run when its context has no earlier deadline.
const RunTimeout = 30 * time.Second

// Host is one workload of a lab: a network namespace with eth0 on the
// lab's bridge. The lab's Root host is the machine's own namespace.
type Host struct {
	lab  *Lab
	name string
	ns   string // "" for the machine's namespace
	addr netip.Addr
}

// Name is the host's name as given to AddHost ("host" for Root).
func (h *Host) Name() string { return h.name }

// NetNS is the name of the host's network namespace as `ip netns` lists it
// ("" for Root).
func (h *Host) NetNS() string { return h.ns }

// Addr is the host's address on the lab.
func (h *Host) Addr() netip.Addr { return h.addr }

// Command returns a command that runs name with args inside the host's
// namespace (`ip netns exec <ns> name args…`, which execs name, so the
// process is name itself). Its own process group keeps a terminal's Ctrl-C
// from reaching it directly, and it is killed if the thread that started it
// dies. The caller runs and waits for it.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if h.ns == "" {
		cmd = exec.CommandContext(ctx, name, args...)
	} else {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return signalGroup(cmd.Process, syscall.SIGTERM) }
	cmd.WaitDelay = h.lab.opts.Grace
	return cmd
}

func signalGroup(p *os.Process, sig syscall.Signal) error {
	if p == nil {
		return nil
	}
	if err := syscall.Kill(-p.Pid, sig); err != nil {
		return p.Signal(sig)
	}
	return nil
}

// Run runs name with args inside the host's namespace to completion,
// bounded by ctx and RunTimeout, and returns its combined output. The error
// of a failed command carries the end of its output.
func (h *Host) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, RunTimeout)
	defer cancel()
	cmd := h.Command(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %s %s: %w%s", h.name, name, strings.Join(args, " "), err, indent(tail(out, 10)))
	}
	return out, nil
}

// Start starts name with args in the background inside the host's
// namespace, its stdout and stderr going to a file in the lab's dir. The
// lab's Close stops it; so does the end of ctx (SIGTERM, then SIGKILL after
// the grace period).
func (h *Host) Start(ctx context.Context, name string, args ...string) (*Proc, error) {
	l := h.lab
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab is closed")
	}
	l.nextLog++
	logPath := filepath.Join(l.dir, fmt.Sprintf("%02d-%s-%s.log", l.nextLog, h.name, filepath.Base(name)))
	l.mu.Unlock()

	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	pctx, cancel := context.WithCancel(ctx)
	cmd := h.Command(pctx, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		cancel()
		f.Close()
		return nil, fmt.Errorf("%s: start %s: %w", h.name, name, err)
	}
	p := &Proc{
		host:    h,
		name:    name,
		args:    args,
		cmd:     cmd,
		logPath: logPath,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go p.wait(f)
	l.mu.Lock()
	l.procs = append(l.procs, p)
	closed := l.closed
	l.mu.Unlock()
	if closed { // Close ran meanwhile and did not see p.
		p.Stop()
		return nil, errors.New("lab is closed")
	}
	l.log.Debug("started", "host", h.name, "cmd", name, "args", args, "pid", cmd.Process.Pid, "log", logPath)
	return p, nil
}

// Do runs fn on an OS thread that is inside the host's namespace: sockets
// fn creates belong to that namespace (and stay there). Goroutines that fn
// starts do not run in the namespace. For Root, fn runs as is.
func (h *Host) Do(fn func() error) error {
	if h.ns == "" {
		return fn()
	}
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(h.ns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("namespace %s: %w", h.ns, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			// Leave the thread locked: it ends with this goroutine.
			_ = netns.Set(orig)
			ch <- fmt.Errorf("enter %s: %w", h.ns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			ch <- errors.Join(ferr, fmt.Errorf("leave %s: %w", h.ns, err))
			return // the thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		ch <- ferr
	}()
	return <-ch
}

// DialContext connects to address from inside the host's namespace.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Listen listens on address inside the host's namespace.
func (h *Host) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() error {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(ctx, network, address)
		return err
	})
	return ln, err
}

// WaitTCP polls until a TCP connection to addr from inside h's namespace
// (the machine's when h is nil) succeeds, or ctx ends.
func WaitTCP(ctx context.Context, h *Host, addr netip.AddrPort) error {
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr.String())
	}
	if h != nil {
		dial = func(ctx context.Context) (net.Conn, error) { return h.DialContext(ctx, "tcp", addr.String()) }
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := dial(actx)
		cancel()
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			where := "host"
			if h != nil {
				where = h.name
			}
			return fmt.Errorf("wait for tcp %v from %s: %w (last: %v)", addr, where, ctx.Err(), err)
		case <-tick.C:
		}
	}
}
