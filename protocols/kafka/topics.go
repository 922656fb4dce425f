package kafka

import (
	"hash/maphash"
	"sync"
)

// Topic ids (KIP-516). Recent clients name topics by id in Fetch (v13+),
// Produce (v13+), OffsetCommit (v10+), OffsetFetch (v10+) and
// TxnOffsetCommit (v6+); rules name topics. The parser learns id → name
// from the Metadata replies (v10+) it sees, in a table shared by the
// parsers of one Protocol value (one proxy), since clients ask for metadata
// on one connection and fetch on another.
const (
	idSetsMin = 16   // sets of a new table (a power of two)
	idSetsMax = 1024 // the table doubles up to this many sets
	idWays    = 4    // entries per set; past idSetsMax, a full set's oldest is replaced
)

// topicIDs maps topic ids to names. It is safe for concurrent use; lookups
// take a read lock and allocate nothing. The table is allocated on the
// first insert and doubles when a set is full, up to idSetsMax × idWays
// entries (about 1 MiB).
type topicIDs struct {
	mu    sync.RWMutex
	seed  maphash.Seed
	slots []idSlot // sets × idWays, nil until the first insert
	next  []uint8  // per set, the way the next new id replaces
}

type idSlot struct {
	id   [16]byte
	used bool
	// ambiguous: two replies gave this id different names (two clusters,
	// or a server lying about another's topic). The id then resolves to
	// no name, so it is judged by its text form: rules that name topics
	// do not allow it.
	ambiguous bool
	n         uint8
	name      [MaxTopicName]byte
}

func (t *topicIDs) set(id []byte) int {
	return int(maphash.Bytes(t.seed, id) & uint64(len(t.next)-1))
}

// insert records that id names the topic name. Names Kafka would refuse
// (empty, longer than MaxTopicName, characters outside [a-zA-Z0-9._-]) and
// the zero id are ignored.
func (t *topicIDs) insert(id, name []byte) {
	if len(id) != 16 || isZeroID(id) || !validTopicName(name) {
		return
	}
	t.mu.RLock()
	s, ok := t.find(id)
	same := ok && !s.ambiguous && string(s.name[:s.n]) == string(name)
	t.mu.RUnlock()
	if same {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
		t.resize(idSetsMin)
	}
	if s, ok := t.find(id); ok {
		if string(s.name[:s.n]) != string(name) {
			s.ambiguous = true
		}
		return
	}
	for {
		set := t.set(id)
		way := -1
		for w := range idWays {
			if !t.slots[set*idWays+w].used {
				way = w
				break
			}
		}
		if way < 0 && len(t.next) < idSetsMax {
			t.resize(2 * len(t.next))
			continue
		}
		if way < 0 {
			way = int(t.next[set])
			t.next[set] = uint8((way + 1) % idWays)
		}
		s = &t.slots[set*idWays+way]
		*s = idSlot{used: true, n: uint8(len(name))}
		copy(s.id[:], id)
		copy(s.name[:], name)
		return
	}
}

// resize moves the entries to a table of sets sets; the caller holds the
// write lock. An entry whose new set is full is dropped (it is learned
// again from the next Metadata reply that names it).
func (t *topicIDs) resize(sets int) {
	old := t.slots
	t.slots = make([]idSlot, sets*idWays)
	t.next = make([]uint8, sets)
	for i := range old {
		if !old[i].used {
			continue
		}
		set := t.set(old[i].id[:])
		for w := range idWays {
			if s := &t.slots[set*idWays+w]; !s.used {
				*s = old[i]
				break
			}
		}
	}
}

// find returns id's slot; the caller holds the lock.
func (t *topicIDs) find(id []byte) (*idSlot, bool) {
	if t.slots == nil || len(id) != 16 {
		return nil, false
	}
	set := t.set(id)
	for w := range idWays {
		s := &t.slots[set*idWays+w]
		if s.used && string(s.id[:]) == string(id) {
			return s, true
		}
	}
	return nil, false
}

// lookup appends the name of id to dst; ok is false (and dst unchanged)
// when the id is unknown or ambiguous.
func (t *topicIDs) lookup(id, dst []byte) ([]byte, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s, ok := t.find(id)
	if !ok || s.ambiguous {
		return dst, false
	}
	return append(dst, s.name[:s.n]...), true
}

// validTopicName reports whether Kafka accepts name as a topic name.
func validTopicName(name []byte) bool {
	if len(name) == 0 || len(name) > MaxTopicName {
		return false
	}
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
