package main

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// TestInitFlags runs `bulkhead-proxy init` in a fresh network namespace
// with the flags the injector passes and reads back the rules: the Envoy
// ports go to 15016, outbound capture excludes the proxy's uid and (no
// --mark given) carries no mark rule. Bad combinations are refused before
// anything is installed.
func TestInitFlags(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (a network namespace, iptables); run it as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var save string
	err := inFreshNS(func() error {
		c := root()
		c.SetArgs([]string{"init", "--exclude-ports=15090", "--envoy-ports=9090,8080", "--outbound", "--exclude-uid=1337"})
		if err := c.ExecuteContext(ctx); err != nil {
			return err
		}
		out, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").CombinedOutput()
		save = string(out)
		return err
	})
	if err != nil {
		t.Fatalf("init: %v\n%s", err, save)
	}
	for _, want := range []string{
		"-A BULKHEAD_INBOUND -p tcp -m tcp --dport 9090 -j REDIRECT --to-ports 15016",
		"-A BULKHEAD_INBOUND -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 15016",
		"-A BULKHEAD_INBOUND -p tcp -j REDIRECT --to-ports 15006",
		"-A BULKHEAD_OUTBOUND -m owner --uid-owner 1337 -j RETURN",
		"-A BULKHEAD_OUTBOUND -p tcp -j REDIRECT --to-ports 15001",
	} {
		if !slices.Contains(strings.Split(save, "\n"), want) {
			t.Errorf("iptables-save has no %q:\n%s", want, save)
		}
	}
	if strings.Contains(save, "--mark") {
		t.Errorf("a mark rule with --exclude-uid and no --mark:\n%s", save)
	}
	for _, args := range [][]string{
		{"init", "--envoy-ports=15090"},                    // excluded and sent to Envoy
		{"init", "--outbound", "--mark=0"},                 // nothing keeps the proxy's traffic out
		{"init", "--outbound", "--exclude-uid=-2"},         // not a uid
		{"init", "--envoy-ports=8080", "--envoy-port=0"},   // nowhere to go
		{"init", "--outbound", "--exclude-uid=4294967295"}, // not a uid
	} {
		err := inFreshNS(func() error {
			c := root()
			c.SetArgs(args)
			return c.ExecuteContext(ctx)
		})
		if err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// inFreshNS runs fn on a locked OS thread in a new network namespace,
// thrown away with the thread afterwards; commands fn runs inherit it.
func inFreshNS(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		ns, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		errc <- fn()
	}()
	return <-errc
}
