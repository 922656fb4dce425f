package history

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// file is one log file of the folder.
type file struct {
	name      string
	size      int64
	mod       time.Time // last write: the newest record is at most this new
	compacted bool
}

// filesLocked lists the log files, oldest first. fileMu is held.
func (h *History) filesLocked() ([]file, error) {
	ents, err := os.ReadDir(h.dir)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	var out []file
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, "h-") || !strings.HasSuffix(n, ".jsonl") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, file{name: n, size: fi.Size(), mod: fi.ModTime(), compacted: strings.HasSuffix(n, ".c.jsonl")})
	}
	slices.SortFunc(out, func(a, b file) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func appendJSONLine(buf []byte, r *Record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return buf, fmt.Errorf("history: encode: %w", err)
	}
	return append(append(buf, b...), '\n'), nil
}

// readFile calls fn for every record of the file, in order; n bounds the
// bytes read (the current file's size when listed). Lines that do not
// parse (a truncated last line) are skipped.
func readFile(path string, n int64, fn func(*Record) error) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // compacted or expired meanwhile
	}
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	var rd io.Reader = f
	if n >= 0 {
		rd = io.LimitReader(f, n)
	}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.ID == "" {
			continue
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("history: read %s: %w", filepath.Base(path), err)
	}
	return nil
}

// scan calls fn for every record on disk, oldest file first, then for the
// pending window's records.
func (h *History) scan(ctx context.Context, since time.Time, fn func(*Record) error) error {
	h.fileMu.Lock()
	files, err := h.filesLocked()
	h.fileMu.Unlock()
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !since.IsZero() && f.mod.Before(since) {
			continue // every record is older
		}
		if err := readFile(filepath.Join(h.dir, f.name), f.size, fn); err != nil {
			return err
		}
	}
	h.mu.Lock()
	pend := make([]Record, 0, len(h.pending))
	for _, r := range h.pending {
		pend = append(pend, *r)
	}
	h.mu.Unlock()
	for i := range pend {
		if err := fn(&pend[i]); err != nil {
			return err
		}
	}
	return nil
}

// Query returns the records that match f, one per flow and window, newest
// last seen first.
func (h *History) Query(ctx context.Context, f Filter) ([]Record, error) {
	var out []Record
	err := h.scan(ctx, f.Since, func(r *Record) error {
		if f.match(r) {
			out = append(out, *r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Record) int { return b.LastSeen.Compare(a.LastSeen) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Aggregate returns the records that match f merged by flow (one record per
// ID over the whole period: counts summed, first and last seen widened),
// newest last seen first.
func (h *History) Aggregate(ctx context.Context, f Filter) ([]Record, error) {
	byID := map[string]*Record{}
	var order []string
	err := h.scan(ctx, f.Since, func(r *Record) error {
		if !f.match(r) {
			return nil
		}
		if cur, ok := byID[r.ID]; ok {
			cur.merge(r)
			return nil
		}
		c := *r
		byID[r.ID] = &c
		order = append(order, r.ID)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	slices.SortStableFunc(out, func(a, b Record) int { return b.LastSeen.Compare(a.LastSeen) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// ErrNotFound is returned by Get for an id the history does not hold.
var ErrNotFound = errors.New("history: no such record")

// Get returns the flow with this id aggregated over the whole history.
func (h *History) Get(ctx context.Context, id string) (Record, error) {
	var got *Record
	err := h.scan(ctx, time.Time{}, func(r *Record) error {
		if r.ID != id {
			return nil
		}
		if got == nil {
			c := *r
			got = &c
		} else {
			got.merge(r)
		}
		return nil
	})
	if err != nil {
		return Record{}, err
	}
	if got == nil {
		return Record{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return *got, nil
}

// Compact aggregates sealed files older than CompactAfter, deletes files
// older than MaxAge, and deletes the oldest files while the folder is
// larger than MaxBytes. Start calls it periodically.
func (h *History) Compact() error {
	h.fileMu.Lock()
	defer h.fileMu.Unlock()
	now := h.opts.Now()
	if h.cur != nil && now.Sub(h.curOpen) >= h.opts.FileAge {
		h.sealLocked()
	}
	files, err := h.filesLocked()
	if err != nil {
		return err
	}
	var errs []error
	kept := files[:0]
	for _, f := range files {
		switch {
		case now.Sub(f.mod) > h.opts.MaxAge:
			errs = append(errs, h.removeLocked(f.name, "age"))
			continue
		case !f.compacted && f.name != h.curName && now.Sub(f.mod) > h.opts.CompactAfter:
			nf, err := h.compactFileLocked(f)
			if err != nil {
				errs = append(errs, err)
			} else {
				f = nf
			}
		}
		kept = append(kept, f)
	}
	var total int64
	for _, f := range kept {
		total += f.size
	}
	for i := 0; total > h.opts.MaxBytes && i < len(kept); i++ {
		if kept[i].name == h.curName {
			h.sealLocked()
		}
		errs = append(errs, h.removeLocked(kept[i].name, "size"))
		total -= kept[i].size
	}
	return errors.Join(errs...)
}

func (h *History) removeLocked(name, why string) error {
	if err := os.Remove(filepath.Join(h.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("history: expire: %w", err)
	}
	h.m.expired.WithLabelValues(why).Inc()
	h.log.Debug("history file expired", "file", name, "why", why)
	return nil
}

// compactFileLocked rewrites f with one record per flow.
func (h *History) compactFileLocked(f file) (file, error) {
	src := filepath.Join(h.dir, f.name)
	byID := map[string]*Record{}
	var order []string
	err := readFile(src, -1, func(r *Record) error {
		if cur, ok := byID[r.ID]; ok {
			cur.merge(r)
			return nil
		}
		c := *r
		byID[r.ID] = &c
		order = append(order, r.ID)
		return nil
	})
	if err != nil {
		return f, err
	}
	recs := make([]*Record, 0, len(order))
	for _, id := range order {
		recs = append(recs, byID[id])
	}
	slices.SortStableFunc(recs, func(a, b *Record) int { return a.LastSeen.Compare(b.LastSeen) })
	var buf []byte
	for _, r := range recs {
		if buf, err = appendJSONLine(buf, r); err != nil {
			return f, err
		}
	}
	name := strings.TrimSuffix(f.name, ".jsonl") + ".c.jsonl"
	dst := filepath.Join(h.dir, name)
	tmp := dst + ".tmp"
	if err := writeSynced(tmp, buf); err != nil {
		os.Remove(tmp)
		return f, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return f, fmt.Errorf("history: compact: %w", err)
	}
	// Keep the source's time: expiry goes by the newest record's age.
	os.Chtimes(dst, f.mod, f.mod)
	if err := os.Remove(src); err != nil {
		return f, fmt.Errorf("history: compact: %w", err)
	}
	syncDir(h.dir)
	h.m.compactions.Inc()
	return file{name: name, size: int64(len(buf)), mod: f.mod, compacted: true}, nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("history: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("history: %w", err)
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
