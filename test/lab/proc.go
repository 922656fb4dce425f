package lab

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Proc is a process a Host started in the background.
type Proc struct {
	host    *Host
	name    string
	args    []string
	cmd     *exec.Cmd
	logPath string
	cancel  func()
	done    chan struct{}
	err     error // set before done is closed
}

func (p *Proc) wait(f *os.File) {
	p.err = p.cmd.Wait()
	f.Close()
	p.cancel()
	close(p.done)
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its error when it has.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits for the process to exit and returns what exec.Cmd.Wait did.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM to the process's group, SIGKILL to the process after
// the lab's grace period, and waits for it to exit. Stopping an exited
// process does nothing.
func (p *Proc) Stop() {
	p.cancel()
	<-p.done
}

// LogPath is the file that holds the process's stdout and stderr.
func (p *Proc) LogPath() string { return p.logPath }

// Output returns everything the process wrote so far.
func (p *Proc) Output() []byte {
	b, _ := os.ReadFile(p.logPath)
	return b
}

// Tail returns the last n lines the process wrote (at most 64 KiB).
func (p *Proc) Tail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return tail(b, n)
}

// Err describes a process that exited: its command, error and the end of
// its output. Nil while it runs.
func (p *Proc) Err() error {
	exited, err := p.Exited()
	if !exited {
		return nil
	}
	if err == nil {
		err = errors.New("exited")
	}
	return &ExitError{Host: p.host.name, Cmd: p.name + " " + strings.Join(p.args, " "), Err: err, Tail: p.Tail(15)}
}

// ExitError is a background process that ended.
type ExitError struct {
	Host, Cmd string
	Err       error
	Tail      string
}

func (e *ExitError) Error() string {
	return e.Host + ": " + e.Cmd + ": " + e.Err.Error() + indent(e.Tail)
}

func (e *ExitError) Unwrap() error { return e.Err }

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	for i, cut := len(b)-1, 0; i >= 0; i-- {
		if b[i] == '\n' {
			cut++
			if cut == n {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "\n    | " + strings.ReplaceAll(s, "\n", "\n    | ")
}
