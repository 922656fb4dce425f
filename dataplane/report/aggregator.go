package report

import (
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
)

// DefaultMaxFlows is the Aggregator's bound when NewAggregator is given
// max <= 0.
const DefaultMaxFlows = 10000

// MaxNames bounds the names an Aggregator interns (ids 1…MaxNames). Beyond
// it Intern returns OverflowName.
const MaxNames = 1<<16 - 2

// OverflowName is the id Intern returns once MaxNames names are interned;
// it is reported as the name "(overflow)".
const OverflowName = 1<<16 - 1

// stats is what a window knows of one key.
type stats struct {
	count, bytes uint64
	first, last  int64   // UnixNano
	detail       *detail // the L7 detail, in its reported form; nil when none
}

// detail is the L7 detail of a flow as reported (bounded, valid UTF-8).
type detail struct {
	resource, aux string
	more          []string
	dstName       string
}

// Aggregator counts flows per Key within a window; see the package
// documentation. Safe for concurrent use.
type Aggregator struct {
	max   int
	clock func() int64 // UnixNano; replaced in tests
	seed  maphash.Seed // for the hash of a key's L7 detail

	mu      sync.Mutex
	index   map[packed]int32 // key → its stats in st
	st      []stats
	dropped uint64
	ids     map[string]uint16 // interned names
	names   []string          // by id; names[0] == ""
	// The previous window's containers, cleared, for reuse.
	spareIndex map[packed]int32
	spareSt    []stats
}

// NewAggregator returns an Aggregator that holds at most max keys per window
// (DefaultMaxFlows when max <= 0).
func NewAggregator(max int) *Aggregator {
	if max <= 0 {
		max = DefaultMaxFlows
	}
	return &Aggregator{
		max:   max,
		clock: func() int64 { return time.Now().UnixNano() },
		seed:  maphash.MakeSeed(),
		index: make(map[packed]int32),
		ids:   map[string]uint16{"": 0},
		names: []string{""},
	}
}

// Intern returns the id of a protocol or rule name, for Key.Proto and
// Key.Rule; "" is 0. Ids are stable for the life of the Aggregator. It
// allocates only the first time it sees a name; call it once per connection
// for the protocol (AddDecision interns rule names itself).
func (a *Aggregator) Intern(name string) uint16 {
	a.mu.Lock()
	id := a.internLocked(name)
	a.mu.Unlock()
	return id
}

func (a *Aggregator) internLocked(name string) uint16 {
	if id, ok := a.ids[name]; ok {
		return id
	}
	if len(a.names) > MaxNames {
		return OverflowName
	}
	id := uint16(len(a.names))
	a.ids[name] = id
	a.names = append(a.names, name)
	return id
}

// Add counts one record of k carrying bytes bytes (negative counts as 0).
// For a key already in the window it allocates nothing; a new key beyond the
// Aggregator's bound is counted as dropped and not stored. A new key's L7
// detail (SetL7) is copied; the views must be valid until Add returns.
func (a *Aggregator) Add(k *Key, bytes int) {
	now := a.clock()
	a.hashL7(k)
	a.mu.Lock()
	a.addLocked(k, bytes, now)
	a.mu.Unlock()
}

// AddDecision sets k's verdict, reason and rule from d (interning the rule
// name) and counts it as Add does, in one critical section. It allocates
// nothing for a known rule name and a key already in the window.
func (a *Aggregator) AddDecision(k *Key, d enforce.Decision, bytes int) {
	now := a.clock()
	a.hashL7(k)
	a.mu.Lock()
	k.SetDecision(d, a.internLocked(d.Rule))
	a.addLocked(k, bytes, now)
	a.mu.Unlock()
}

// hashL7 sets k's L7 hash from its detail, with the Aggregator's seed: the
// fields as cut, each with its length, the cut marks and the destination
// name. Zero when the record has neither detail nor name. It allocates
// nothing.
func (a *Aggregator) hashL7(k *Key) {
	if !k.hasL7() {
		k.l7h = [8]byte{}
		return
	}
	var h maphash.Hash
	h.SetSeed(a.seed)
	var n [4]byte
	write := func(b []byte) {
		binary.LittleEndian.PutUint16(n[:2], uint16(len(b)))
		h.Write(n[:2])
		h.Write(b)
	}
	write(k.res)
	write(k.aux)
	for i := range k.nMore {
		write(k.more[i])
	}
	binary.LittleEndian.PutUint32(n[:], k.cut)
	h.Write(n[:])
	h.WriteByte(k.nMore)
	write(k.name[:k.nameLen])
	sum := h.Sum64()
	if sum == 0 {
		sum = 1 // zero means "no detail"
	}
	binary.LittleEndian.PutUint64(k.l7h[:], sum)
}

func (a *Aggregator) addLocked(k *Key, bytes int, now int64) {
	b := uint64(max(bytes, 0))
	if i, ok := a.index[k.packed]; ok {
		s := &a.st[i]
		s.count++
		s.bytes += b
		s.last = max(s.last, now)
		return
	}
	if len(a.index) >= a.max {
		a.dropped++
		return
	}
	a.index[k.packed] = int32(len(a.st))
	s := stats{count: 1, bytes: b, first: now, last: now}
	if k.l7h != [8]byte{} {
		s.detail = newDetail(k)
	}
	a.st = append(a.st, s)
}

// newDetail copies k's L7 detail into its reported form.
func newDetail(k *Key) *detail {
	d := &detail{
		resource: field(k.res, k.cut&cutRes != 0, MaxResource),
		aux:      field(k.aux, k.cut&cutAux != 0, MaxAux),
		dstName:  string(k.name[:k.nameLen]), // valid: SetDstName checked it
	}
	if k.nMore > 0 || k.cut&cutList != 0 {
		n := int(k.nMore)
		if k.cut&cutList != 0 {
			n = min(n, MaxMore-1)
		}
		d.more = make([]string, 0, n+1)
		for i := range n {
			d.more = append(d.more, field(k.more[i], k.cut&(cutMore0<<i) != 0, MaxResource))
		}
		if k.cut&cutList != 0 {
			d.more = append(d.more, Truncated)
		}
	}
	return d
}

// Len returns the number of keys in the current window.
func (a *Aggregator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.index)
}

// Drain ends the window: it returns its flows, sorted by key, and the number
// of records dropped because the window was full, and starts an empty
// window. now is the end of the window: no flow is reported as seen after
// it. Segments are left empty (the Reporter fills them in). The flows are
// new; the caller owns them.
func (a *Aggregator) Drain(now time.Time) (flows []*bulkheadv1.Flow, dropped uint64) {
	a.mu.Lock()
	index, st, dropped, names := a.index, a.st, a.dropped, a.names
	a.index, a.st, a.dropped = a.spareIndex, a.spareSt, 0
	a.spareIndex, a.spareSt = nil, nil
	if a.index == nil {
		a.index = make(map[packed]int32, len(index))
	}
	a.mu.Unlock()

	type item struct {
		k packed
		s *stats
	}
	items := make([]item, 0, len(index))
	for k, i := range index {
		items = append(items, item{k, &st[i]})
	}
	slices.SortFunc(items, func(x, y item) int {
		return cmp.Or(compareKeys(&x.k, &y.k), compareDetails(x.s.detail, y.s.detail),
			slices.Compare(x.k.l7h[:], y.k.l7h[:]))
	})
	end := now.UnixNano()
	addrs := make(map[[16]byte]string)
	addr := func(b [16]byte) string {
		s, ok := addrs[b]
		if !ok {
			s = netip.AddrFrom16(b).Unmap().String()
			addrs[b] = s
		}
		return s
	}
	flows = make([]*bulkheadv1.Flow, 0, len(items))
	for i := range items {
		k, s := &items[i].k, items[i].s
		last := min(s.last, end)
		first := min(s.first, last)
		f := &bulkheadv1.Flow{
			Direction:  k.Dir.Proto(),
			SrcIp:      addr(k.src),
			DstIp:      addr(k.dst),
			DstPort:    uint32(k.DstPort),
			Protocol:   name(names, k.Proto),
			Verb:       k.verbString(),
			Sub:        k.subString(),
			Verdict:    k.Verdict.Proto(),
			Mode:       k.Mode.Proto(),
			Rule:       name(names, k.Rule),
			Reason:     reason(k.Reason),
			Count:      s.count,
			Bytes:      s.bytes,
			FirstSeen:  timestamppb.New(time.Unix(0, first)),
			LastSeen:   timestamppb.New(time.Unix(0, last)),
			Connection: k.Connection,
		}
		if d := s.detail; d != nil {
			f.Resource, f.Aux, f.MoreResources, f.DstName = d.resource, d.aux, d.more, d.dstName
		}
		flows = append(flows, f)
	}

	clear(index)
	clear(st) // drop the details
	a.mu.Lock()
	if a.spareIndex == nil {
		a.spareIndex, a.spareSt = index, st[:0]
	}
	a.mu.Unlock()
	return flows, dropped
}

// compareDetails orders L7 details (nil first).
func compareDetails(a, b *detail) int {
	switch {
	case a == nil || b == nil:
		return boolCompare(a != nil, b != nil)
	}
	return cmp.Or(strings.Compare(a.resource, b.resource), strings.Compare(a.aux, b.aux), slices.Compare(a.more, b.more),
		strings.Compare(a.dstName, b.dstName))
}

// name resolves an interned id; names is append-only, so a snapshot of its
// header taken under the lock stays valid.
func name(names []string, id uint16) string {
	if id == OverflowName {
		return "(overflow)"
	}
	if int(id) < len(names) {
		return names[id]
	}
	return ""
}

// reason is the Flow.reason text: empty when a rule allowed it.
func reason(r enforce.Reason) string {
	if r == enforce.None {
		return ""
	}
	return r.String()
}
