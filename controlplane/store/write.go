package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// tempMarker is in the name of every temporary file, which also starts with
// a dot: ".<name>.yaml.tmp<random>".
const tempMarker = ".tmp"

// writeAtomic replaces path with data: a temporary file in the same folder,
// fsync, rename, fsync of the folder.
func writeAtomic(path string, data []byte) error {
	var b batch
	defer b.abort()
	if err := b.stage(path, data); err != nil {
		return err
	}
	_, err := b.commit()
	return err
}

// batch stages several files and renames them into place together, so that
// a failure while staging leaves every target untouched.
type batch struct {
	staged []staged
}

type staged struct{ tmp, path string }

// stage writes data to a synced temporary file beside path.
func (b *batch) stage(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+tempMarker+"*")
	if err != nil {
		return err
	}
	b.staged = append(b.staged, staged{tmp: f.Name(), path: path})
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	return f.Close()
}

// commit renames the staged files into place, in order, then syncs their
// folders (and a new folder's parent). It returns how many it renamed.
func (b *batch) commit() (int, error) {
	var n int
	var errs []error
	for _, st := range b.staged {
		if err := os.Rename(st.tmp, st.path); err != nil {
			errs = append(errs, err)
			break
		}
		n++
	}
	dirs := make(map[string]bool)
	for _, st := range b.staged[:n] {
		dir := filepath.Dir(st.path)
		if !dirs[dir] {
			dirs[dir] = true
			// The folder may be new: its entry in the parent must
			// reach the disk too.
			errs = append(errs, syncDir(dir), syncDir(filepath.Dir(dir)))
		}
	}
	b.staged = b.staged[n:]
	return n, errors.Join(errs...)
}

// abort removes the temporary files not renamed.
func (b *batch) abort() {
	for _, st := range b.staged {
		os.Remove(st.tmp)
	}
	b.staged = nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
