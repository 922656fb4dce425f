package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// perfCounter counts a process's system calls and context switches with
// `perf stat` (linux-perf) while a load runs: the kernel work a proxy asks
// for per request, which the issue names as what to cut. Optional: without
// perf, or where the kernel refuses, nothing is counted.
type perfCounter struct {
	cmd  *exec.Cmd
	out  string
	done chan error
}

// startPerf attaches perf stat to pid, or returns nil when perf is missing.
func startPerf(dir string, pid int) *perfCounter {
	bin, err := exec.LookPath("perf")
	if err != nil {
		return nil
	}
	out := filepath.Join(dir, fmt.Sprintf("perf-%d-%d.csv", pid, time.Now().UnixNano()))
	cmd := exec.Command(bin, "stat", "-x", ",", "-e", "raw_syscalls:sys_enter,context-switches", "-p", strconv.Itoa(pid), "-o", out)
	if err := cmd.Start(); err != nil {
		return nil
	}
	pc := &perfCounter{cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { pc.done <- cmd.Wait() }()
	// perf needs a moment to attach; counting a little late only misses
	// the first requests.
	time.Sleep(100 * time.Millisecond)
	return pc
}

// stop ends perf stat and returns the system calls and context switches it
// counted; ok is false when it counted nothing usable.
func (pc *perfCounter) stop(ctx context.Context) (syscalls, switches float64, ok bool) {
	if pc == nil {
		return 0, 0, false
	}
	_ = pc.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-pc.done:
	case <-ctx.Done():
		_ = pc.cmd.Process.Kill()
		<-pc.done
		return 0, 0, false
	case <-time.After(5 * time.Second):
		_ = pc.cmd.Process.Kill()
		<-pc.done
		return 0, 0, false
	}
	defer os.Remove(pc.out)
	f, err := os.Open(pc.out)
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	return parsePerfStat(f)
}

// parsePerfStat reads `perf stat -x,` output: "value,unit,event,…" lines.
func parsePerfStat(f io.Reader) (syscalls, switches float64, ok bool) {
	sc := bufio.NewScanner(f)
	var seen int
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ",")
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue // <not counted>, <not supported>
		}
		switch fields[2] {
		case "raw_syscalls:sys_enter":
			syscalls, seen = v, seen+1
		case "context-switches":
			switches, seen = v, seen+1
		}
	}
	return syscalls, switches, seen == 2
}
