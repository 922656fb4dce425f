package enforce

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults and bounds of a Names table.
const (
	// DefaultMaxNameAddrs bounds the addresses a Names table holds.
	DefaultMaxNameAddrs = 8192
	// DefaultMinNameTTL is the least time a learned name stays: clients
	// (the JVM, connection pools) keep using an address somewhat past its
	// TTL, and a name rule should still cover them.
	DefaultMinNameTTL = 60 * time.Second
	// DefaultMaxNameTTL caps the TTL of an answer.
	DefaultMaxNameTTL = 24 * time.Hour
	// MaxNamesPerAddr bounds the names one address keeps (a CDN address
	// answers for many names); beyond it the name that expires first goes.
	MaxNamesPerAddr = 8
	// MaxDNSName bounds a name in bytes (RFC 1035: 253 in text form).
	MaxDNSName = 253
)

// NamesOptions shape a Names table. The zero value takes every default.
type NamesOptions struct {
	// MaxAddrs bounds the addresses held (DefaultMaxNameAddrs when <= 0).
	// When full, expired entries are dropped first, then the eighth of
	// the addresses whose names expire soonest.
	MaxAddrs int
	// MinTTL and MaxTTL clamp an answer's TTL (defaults
	// DefaultMinNameTTL and DefaultMaxNameTTL; negative MinTTL: 0).
	MinTTL, MaxTTL time.Duration
	// Now is the clock (tests). Nil: time.Now.
	Now func() time.Time
}

// Names is the table of the DNS names that addresses stand for, learned from
// the DNS answers the proxy relays (Add), with their TTLs. Egress Conns
// consult it for FQDN peers (Policy.OutboundNamed). It is separate from the
// immutable Policy: it changes with every answer, and a policy swap keeps
// it. Safe for concurrent use; Add for a known (name, address) and Lookup
// take a read lock and allocate nothing.
type Names struct {
	max            int
	minTTL, maxTTL int64 // nanoseconds
	now            func() time.Time

	mu    sync.RWMutex
	addrs map[netip.Addr]*nameSet
	// nextSweep is when Add next drops expired entries (UnixNano).
	nextSweep int64
}

// nameSet is the names of one address. names[:n] are set; a name is written
// once under the write lock, its expiry may be pushed later under the read
// lock.
type nameSet struct {
	n     int
	names [MaxNamesPerAddr]string
	exp   [MaxNamesPerAddr]atomic.Int64 // UnixNano
}

// sweepEvery is how often Add drops expired entries, at most.
const sweepEvery = int64(30 * time.Second)

// NewNames returns an empty table.
func NewNames(o NamesOptions) *Names {
	t := &Names{
		max:    o.MaxAddrs,
		minTTL: int64(o.MinTTL),
		maxTTL: int64(o.MaxTTL),
		now:    o.Now,
		addrs:  make(map[netip.Addr]*nameSet),
	}
	if t.max <= 0 {
		t.max = DefaultMaxNameAddrs
	}
	switch {
	case o.MinTTL == 0:
		t.minTTL = int64(DefaultMinNameTTL)
	case o.MinTTL < 0:
		t.minTTL = 0
	}
	if t.maxTTL <= 0 {
		t.maxTTL = int64(DefaultMaxNameTTL)
	}
	t.maxTTL = max(t.maxTTL, t.minTTL)
	if t.now == nil {
		t.now = time.Now
	}
	return t
}

// Add records that name (lower case, no final dot, as protocols/dns reports
// it) resolved to addr for ttl seconds, clamped to [MinTTL, MaxTTL]. A name
// already known for addr only has its expiry pushed later. Empty names,
// names longer than MaxDNSName and invalid addresses are ignored. It
// allocates only for a name new to the address.
func (t *Names) Add(name []byte, addr netip.Addr, ttl uint32) {
	if len(name) == 0 || len(name) > MaxDNSName || !addr.IsValid() {
		return
	}
	addr = addr.Unmap().WithZone("")
	now := t.now().UnixNano()
	exp := now + min(max(int64(ttl)*int64(time.Second), t.minTTL), t.maxTTL)

	t.mu.RLock()
	if s := t.addrs[addr]; s != nil {
		for i := range s.n {
			if s.names[i] == string(name) {
				pushLater(&s.exp[i], exp)
				t.mu.RUnlock()
				return
			}
		}
	}
	t.mu.RUnlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	if now >= t.nextSweep {
		t.sweep(now)
		t.nextSweep = now + sweepEvery
	}
	s := t.addrs[addr]
	if s == nil {
		if len(t.addrs) >= t.max {
			t.sweep(now)
			if len(t.addrs) >= t.max {
				t.evict()
			}
		}
		s = &nameSet{}
		t.addrs[addr] = s
	}
	for i := range s.n { // added meanwhile
		if s.names[i] == string(name) {
			pushLater(&s.exp[i], exp)
			return
		}
	}
	i := s.n
	if i == MaxNamesPerAddr {
		// Replace the name that expires first (an expired one, if any).
		i = 0
		for j := 1; j < s.n; j++ {
			if s.exp[j].Load() < s.exp[i].Load() {
				i = j
			}
		}
	} else {
		s.n++
	}
	s.names[i] = string(name)
	s.exp[i].Store(exp)
}

// pushLater raises *a to v unless it is later already.
func pushLater(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if old >= v || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// Lookup writes the names addr stands for now (unexpired) into dst and
// returns how many it wrote (at most len(dst) and MaxNamesPerAddr). The
// strings stay valid. It allocates nothing.
func (t *Names) Lookup(addr netip.Addr, dst []string) int {
	if t == nil || len(dst) == 0 {
		return 0
	}
	addr = addr.Unmap().WithZone("")
	now := t.now().UnixNano()
	n := 0
	t.mu.RLock()
	if s := t.addrs[addr]; s != nil {
		for i := 0; i < s.n && n < len(dst); i++ {
			if s.exp[i].Load() > now {
				dst[n] = s.names[i]
				n++
			}
		}
	}
	t.mu.RUnlock()
	return n
}

// Len is the number of addresses held (expired ones included until they are
// swept).
func (t *Names) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.addrs)
}

// sweep drops expired names and addresses left without one; mu is held.
func (t *Names) sweep(now int64) {
	for a, s := range t.addrs {
		k := 0
		for i := range s.n {
			if e := s.exp[i].Load(); e > now {
				s.names[k] = s.names[i]
				s.exp[k].Store(e)
				k++
			}
		}
		for i := k; i < s.n; i++ {
			s.names[i] = ""
		}
		s.n = k
		if k == 0 {
			delete(t.addrs, a)
		}
	}
}

// evict drops the eighth of the addresses (at least one) whose last name
// expires first; mu is held. Sorting once per max/8 insertions keeps the
// cost per Add small.
func (t *Names) evict() {
	type last struct {
		addr netip.Addr
		exp  int64
	}
	all := make([]last, 0, len(t.addrs))
	for a, s := range t.addrs {
		var e int64
		for i := range s.n {
			e = max(e, s.exp[i].Load())
		}
		all = append(all, last{a, e})
	}
	slices.SortFunc(all, func(x, y last) int {
		if x.exp != y.exp {
			if x.exp < y.exp {
				return -1
			}
			return 1
		}
		return x.addr.Compare(y.addr)
	})
	for _, l := range all[:max(1, len(all)/8)] {
		delete(t.addrs, l.addr)
	}
}
