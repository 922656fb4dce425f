package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Sweep removes what a lab with this prefix left behind, e.g. after a crash:
// it kills the processes inside every namespace named "<prefix>-…", deletes
// those namespaces (their veths and the bridge go with them), deletes the
// machine's links named "<prefix>-…" and the temp dirs of labs with this
// prefix that were never closed (kept dirs of closed labs stay). Nothing
// found is not an error. Two labs with one prefix must not run at once: the
// second sweeps the first away.
func Sweep(prefix string) error {
	if len(prefix) == 0 || !prefixRE.MatchString(prefix) {
		return fmt.Errorf("sweep: bad prefix %q", prefix)
	}
	var errs []error
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list %s: %w", netnsDir, err))
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			if err := deleteNS(e.Name()); err != nil {
				errs = append(errs, fmt.Errorf("delete namespace %s: %w", e.Name(), err))
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix(prefix)+"*"))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, runningMark)); err == nil {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", d, err))
			}
		}
	}
	links, err := listLinks()
	if err != nil {
		errs = append(errs, fmt.Errorf("list links: %w", err))
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix+"-") {
			if err := deleteLink(l.Attrs().Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// deleteNS kills every process whose network namespace is the named one,
// then unmounts and removes the name. A namespace that does not exist is
// not an error.
func deleteNS(name string) error {
	path := filepath.Join(netnsDir, name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := killInNS(path); err != nil {
		return err
	}
	if err := netns.DeleteNamed(name); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		// A file that is no longer a mount point (half-made namespace).
		if errors.Is(err, syscall.EINVAL) {
			if rerr := os.Remove(path); rerr == nil || errors.Is(rerr, os.ErrNotExist) {
				return nil
			}
		}
		return err
	}
	return nil
}

// killInNS sends SIGKILL to every process whose network namespace is the
// one bound at path and waits (briefly) until they are gone, so that the
// namespace really disappears when its name is removed.
func killInNS(path string) error {
	var want syscall.Stat_t
	if err := syscall.Stat(path, &want); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := pidsInNS(want)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in %s do not exit", pids, path)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pidsInNS lists the live (not zombie) processes whose network namespace is
// the one with want's device and inode, like `ip netns pids`.
func pidsInNS(want syscall.Stat_t) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino && !zombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // gone
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// deleteLink deletes a link of the machine's namespace; a link that does not
// exist is not an error.
func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		if _, gone := netlink.LinkByName(name); gone != nil {
			return nil // went with its peer's namespace meanwhile
		}
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// tempPrefix starts the name of a lab's temp dir; the dash keeps prefix
// "bh" from matching the dirs of "bh3".
func tempPrefix(prefix string) string { return "bulkhead-lab-" + prefix + "-" }

func netipToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// listLinks lists the host's links. A dump the kernel interrupted because
// links changed meanwhile (other labs, or tests, create and delete links
// in parallel) is asked again, a few times.
func listLinks() ([]netlink.Link, error) {
	var err error
	for range 5 {
		var links []netlink.Link
		links, err = netlink.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return links, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, err
}
