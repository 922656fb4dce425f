package history

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
)

// Defaults of Options.
const (
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultMaxBytes        = 256 << 20
	DefaultWindow          = time.Minute
	DefaultFileAge         = time.Hour
	DefaultCompactAfter    = time.Hour
	DefaultCompactInterval = 5 * time.Minute
	DefaultMaxPending      = 10000
	// maxLine bounds one record's line when reading (records are bounded
	// by the flow limits of controlplane/flows to a few KiB).
	maxLine = 1 << 20
)

// Options tunes a History. The zero value uses the defaults.
type Options struct {
	// MaxAge: files whose newest record is older are deleted. Zero: 7 days.
	MaxAge time.Duration
	// MaxBytes bounds the folder; the oldest files are deleted beyond it.
	// Zero: 256 MiB.
	MaxBytes int64
	// Window is how long flows are aggregated in memory before they are
	// written (and exported). Zero: one minute.
	Window time.Duration
	// FileAge and FileBytes seal the current file. Zero: one hour, and
	// MaxBytes/16 (at least 64 KiB).
	FileAge   time.Duration
	FileBytes int64
	// CompactAfter: sealed files older than this are aggregated into one
	// record per flow. Zero: one hour. CompactInterval is how often Start
	// compacts and expires. Zero: five minutes.
	CompactAfter, CompactInterval time.Duration
	// MaxPending bounds the flows aggregated in memory; a window that
	// reaches it is written at once. Zero: 10000.
	MaxPending int
	// Exporters receive every written window.
	Exporters []Exporter
	// Registerer receives the package's metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.FileAge <= 0 {
		o.FileAge = DefaultFileAge
	}
	if o.FileBytes <= 0 {
		o.FileBytes = max(o.MaxBytes/16, 64<<10)
	}
	if o.CompactAfter <= 0 {
		o.CompactAfter = DefaultCompactAfter
	}
	if o.CompactInterval <= 0 {
		o.CompactInterval = DefaultCompactInterval
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Record is one aggregated flow of the history: the admin API's flow record
// (controlplane/flows.Record, whose JSON fields it shares) plus its id, the
// judging segment and whether it is a connection (L4) record.
type Record struct {
	// ID identifies the flow's key (stable across windows and compaction).
	ID string `json:"id"`
	// Segment is the judging segment: the destination's for ingress, the
	// source's for egress ("ns/name", empty when unknown).
	Segment    string `json:"segment"`
	Connection bool   `json:"connection,omitempty"`
	flows.Record
}

// IsViolation reports whether the record is a violation or a denial.
func (r *Record) IsViolation() bool { return r.Verdict == "violation" || r.Verdict == "deny" }

// key is what records aggregate by; its hash is the Record's ID. The
// destination name is appended only when set, so that the IDs of records
// without one stay what they were before names were reported.
func (r *Record) key() string {
	k := strings.Join([]string{r.Direction, r.SrcIP, r.DstIP, fmt.Sprint(r.DstPort), r.Protocol,
		r.Verb, r.Sub, r.Resource, r.Aux, strings.Join(r.MoreResources, "\x01"),
		r.Verdict, r.Rule, r.Reason, fmt.Sprint(r.Connection)}, "\x00")
	if r.DstName != "" {
		k += "\x00name\x00" + r.DstName
	}
	return k
}

func idOf(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

// merge adds o's counts and widens r's times; the rest is taken from the
// newer of the two.
func (r *Record) merge(o *Record) {
	r.Count += o.Count
	r.Bytes += o.Bytes
	if o.FirstSeen.Before(r.FirstSeen) {
		r.FirstSeen = o.FirstSeen
	}
	if !o.LastSeen.Before(r.LastSeen) {
		r.LastSeen = o.LastSeen
		r.SrcSegment, r.DstSegment, r.Segment = o.SrcSegment, o.DstSegment, o.Segment
		r.Mode, r.Node = o.Mode, o.Node
	}
}

// FromFlow converts a reported flow into a Record (without aggregation).
func FromFlow(node string, f *bulkheadv1.Flow, now time.Time) Record {
	r := Record{Connection: f.GetConnection()}
	r.Direction = dirName(f.GetDirection())
	r.SrcIP, r.SrcSegment = f.GetSrcIp(), f.GetSrcSegment()
	r.DstIP, r.DstSegment = f.GetDstIp(), f.GetDstSegment()
	r.DstPort, r.Protocol = f.GetDstPort(), f.GetProtocol()
	r.Verb, r.Sub, r.Resource, r.Aux = f.GetVerb(), f.GetSub(), f.GetResource(), f.GetAux()
	r.MoreResources = slices.Clone(f.GetMoreResources())
	r.DstName = f.GetDstName()
	r.Verdict = verdictName(f.GetVerdict())
	r.Mode = flows.ModeName(f.GetMode())
	r.Rule, r.Reason = f.GetRule(), f.GetReason()
	r.Count, r.Bytes, r.Node = f.GetCount(), f.GetBytes(), node
	r.FirstSeen, r.LastSeen = now, now
	if ts := f.GetFirstSeen(); ts != nil && ts.IsValid() {
		r.FirstSeen = ts.AsTime()
	}
	if ts := f.GetLastSeen(); ts != nil && ts.IsValid() {
		r.LastSeen = ts.AsTime()
	}
	if r.LastSeen.Before(r.FirstSeen) {
		r.LastSeen = r.FirstSeen
	}
	r.Segment = r.DstSegment
	if r.Direction == "egress" {
		r.Segment = r.SrcSegment
	}
	r.ID = idOf(r.key())
	return r
}

func dirName(d bulkheadv1.Direction) string {
	if d == bulkheadv1.Direction_DIRECTION_EGRESS {
		return "egress"
	}
	return "ingress"
}

func verdictName(v bulkheadv1.Verdict) string {
	switch v {
	case bulkheadv1.Verdict_VERDICT_VIOLATION:
		return "violation"
	case bulkheadv1.Verdict_VERDICT_DENY:
		return "deny"
	}
	return "allow"
}

// Filter selects records.
type Filter struct {
	// Since and Until keep records last seen in [Since, Until). Zero: no
	// bound.
	Since, Until time.Time
	// Segment keeps records whose source, destination or judging segment
	// is this "ns/name", or, without a slash, of this namespace.
	Segment string
	// Violations keeps only violations and denials.
	Violations bool
	// Limit bounds the records returned (the newest are kept). Zero: all.
	Limit int
}

func (f *Filter) match(r *Record) bool {
	if !f.Since.IsZero() && r.LastSeen.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.LastSeen.Before(f.Until) {
		return false
	}
	if f.Violations && !r.IsViolation() {
		return false
	}
	if f.Segment == "" {
		return true
	}
	for _, s := range [...]string{r.SrcSegment, r.DstSegment, r.Segment} {
		if s == f.Segment || !strings.Contains(f.Segment, "/") && strings.HasPrefix(s, f.Segment+"/") {
			return true
		}
	}
	return false
}

// Stats describes the history on disk.
type Stats struct {
	Files   int   `json:"files"`
	Bytes   int64 `json:"bytes"`
	Pending int   `json:"pending"`
	// Dropped counts records lost to write errors.
	Dropped uint64 `json:"dropped"`
}

// History is the flow history. It is safe for concurrent use.
type History struct {
	dir  string
	opts Options
	log  *slog.Logger
	m    *metrics

	mu      sync.Mutex // pending
	pending map[string]*Record

	fileMu  sync.Mutex // the files
	cur     *os.File
	curName string
	curSize int64
	curOpen time.Time
	dropped uint64
}

var _ flows.Sink = (*History)(nil)

// Open opens (creating it) the history folder dir. It starts nothing; Start
// writes windows and compacts.
func Open(dir string, opts Options, log *slog.Logger) (*History, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.defaults()
	if dir == "" {
		return nil, errors.New("history: folder is required")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	// Leftovers of an interrupted compaction.
	if tmps, err := filepath.Glob(filepath.Join(dir, "*.tmp")); err == nil {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	h := &History{dir: dir, opts: opts, log: log.With("component", "history"), pending: map[string]*Record{}}
	h.m = newMetrics(opts.Registerer, h)
	return h, nil
}

// Dir is the history's folder.
func (h *History) Dir() string { return h.dir }

// Add aggregates a batch of flows reported by node into the current
// window (flows.Sink). When the window reaches MaxPending flows it is
// written at once.
func (h *History) Add(node string, fs []*bulkheadv1.Flow) {
	now := h.opts.Now()
	h.mu.Lock()
	for _, f := range fs {
		if f == nil {
			continue
		}
		r := FromFlow(node, f, now)
		if cur, ok := h.pending[r.ID]; ok {
			cur.merge(&r)
			continue
		}
		h.pending[r.ID] = &r
	}
	full := len(h.pending) >= h.opts.MaxPending
	h.mu.Unlock()
	if full {
		if err := h.Flush(context.Background()); err != nil {
			h.log.Error("writing the flow history failed", "error", err)
		}
	}
}

// Flush writes the current window to disk and hands it to the exporters.
func (h *History) Flush(ctx context.Context) error {
	h.mu.Lock()
	recs := make([]Record, 0, len(h.pending))
	for _, r := range h.pending {
		recs = append(recs, *r)
	}
	clear(h.pending)
	h.mu.Unlock()
	if len(recs) == 0 {
		return nil
	}
	slices.SortFunc(recs, func(a, b Record) int {
		if c := a.LastSeen.Compare(b.LastSeen); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	err := h.write(recs)
	for _, e := range h.opts.Exporters {
		if xerr := e.Export(ctx, recs); xerr != nil {
			h.m.exportErrors.Inc()
			h.log.Warn("flow export failed", "error", xerr)
		}
	}
	return err
}

func (h *History) write(recs []Record) error {
	buf := make([]byte, 0, 512*len(recs))
	for i := range recs {
		var err error
		if buf, err = appendJSONLine(buf, &recs[i]); err != nil {
			return err
		}
	}
	h.fileMu.Lock()
	defer h.fileMu.Unlock()
	now := h.opts.Now()
	if h.cur != nil && (h.curSize >= h.opts.FileBytes || now.Sub(h.curOpen) >= h.opts.FileAge) {
		h.sealLocked()
	}
	if h.cur == nil {
		// Names sort by time; a name taken (a clock that did not move) is
		// bumped by a nanosecond.
		var f *os.File
		var name string
		var err error
		for ns := now.UnixNano(); ; ns++ {
			name = fmt.Sprintf("h-%020d.jsonl", ns)
			f, err = os.OpenFile(filepath.Join(h.dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
			if !errors.Is(err, fs.ErrExist) {
				break
			}
		}
		if err != nil {
			h.dropped += uint64(len(recs))
			return fmt.Errorf("history: %w", err)
		}
		h.cur, h.curName, h.curSize, h.curOpen = f, name, 0, now
	}
	n, err := h.cur.Write(buf)
	h.curSize += int64(n)
	if err != nil {
		h.dropped += uint64(len(recs))
		h.sealLocked()
		return fmt.Errorf("history: write %s: %w", h.curName, err)
	}
	h.m.written.Add(float64(len(recs)))
	return nil
}

// sealLocked closes the current file; the next write begins another.
func (h *History) sealLocked() {
	if h.cur == nil {
		return
	}
	if err := h.cur.Sync(); err != nil {
		h.log.Warn("sync of a history file failed", "file", h.curName, "error", err)
	}
	h.cur.Close()
	h.cur, h.curName = nil, ""
}

// Start writes a window every Options.Window and compacts every
// Options.CompactInterval until ctx is done; then it writes the last window
// and closes the current file.
func (h *History) Start(ctx context.Context) error {
	flush := time.NewTicker(h.opts.Window)
	defer flush.Stop()
	compact := time.NewTicker(h.opts.CompactInterval)
	defer compact.Stop()
	for {
		select {
		case <-ctx.Done():
			err := h.Flush(context.Background())
			h.fileMu.Lock()
			h.sealLocked()
			h.fileMu.Unlock()
			return err
		case <-flush.C:
			if err := h.Flush(ctx); err != nil {
				h.log.Error("writing the flow history failed", "error", err)
			}
		case <-compact.C:
			if err := h.Compact(); err != nil {
				h.log.Error("compacting the flow history failed", "error", err)
			}
		}
	}
}

// Stats returns the history's size on disk and pending records.
func (h *History) Stats() Stats {
	h.mu.Lock()
	s := Stats{Pending: len(h.pending)}
	h.mu.Unlock()
	h.fileMu.Lock()
	defer h.fileMu.Unlock()
	s.Dropped = h.dropped
	files, _ := h.filesLocked()
	for _, f := range files {
		s.Files++
		s.Bytes += f.size
	}
	return s
}
