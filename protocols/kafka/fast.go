package kafka

// Specialised walkers for the hot requests, Produce and Fetch: the same
// reads, captures and errors, in the same order, as walker.walk over their
// schemas (requestSchemas), without dispatching per field and checking
// each field's versions. FuzzFastWalk checks them against the interpreter,
// which still reads every other request.

// fastWalk reads the body of a Produce or Fetch request and reports
// whether it did; other keys are left to walk.
func (w *walker) fastWalk() (bool, error) {
	switch w.key {
	case keyProduce:
		return true, w.produce()
	case keyFetch:
		return true, w.fetch()
	}
	return false, nil
}

// produce reads a Produce body: transactional_id (v3+), acks, timeout_ms,
// then the topics, each a name (v0-12) or an id (v13+) and partitions of
// an index and a record set. The offset is kept in pos (see flat.go).
func (w *walker) produce() error {
	b, pos, end, flex := w.r.b, w.r.pos, w.r.end, w.r.flex
	var err error
	if w.ver >= 3 {
		if _, _, pos, err = strAt(b, pos, end, flex, true); err != nil {
			return err
		}
	}
	var acks int16
	if acks, pos, err = i16At(b, pos, end); err != nil {
		return err
	}
	if acks == 0 && w.f != nil {
		w.f.NoReply = true
	}
	if pos, err = skipAt(pos, end, 4); err != nil {
		return err
	}
	var n int
	if n, pos, err = arrAt(b, pos, end, flex); err != nil {
		return err
	}
	for range n {
		start := pos
		w.beginTopic()
		if pos, err = w.topicKey(b, pos, end, flex); err != nil {
			return err
		}
		var m int
		if m, pos, err = arrAt(b, pos, end, flex); err != nil {
			return err
		}
		for range m {
			pstart := pos
			var v int32
			if v, pos, err = i32At(b, pos, end); err != nil {
				return err
			}
			w.partition(v)
			if pos, err = bytesAt(b, pos, end, flex, true); err != nil {
				return err
			}
			if pos, err = endStruct(b, pos, end, flex, pstart); err != nil {
				return err
			}
		}
		if flex {
			if pos, err = tagsAt(b, pos, end); err != nil {
				return err
			}
		}
		w.endTopic()
		if pos == start {
			return errEmptyElement
		}
	}
	return w.endBody(b, pos, end, flex)
}

// fetch reads a Fetch body: replica_id (v0-14), max_wait_ms, min_bytes,
// max_bytes (v3+), isolation_level (v4+), the session id and epoch (v7+),
// the topics, each a name (v0-12) or an id (v13+) and partitions, the
// forgotten topics (v7+) and rack_id (v11+). The offset is kept in pos
// (see flat.go).
func (w *walker) fetch() error {
	b, pos, end, flex := w.r.b, w.r.pos, w.r.end, w.r.flex
	var err error
	fixed := 4 + 4 // max_wait_ms, min_bytes
	if w.ver <= 14 {
		fixed += 4 // replica_id
	}
	if w.ver >= 3 {
		fixed += 4 // max_bytes
	}
	if w.ver >= 4 {
		fixed++ // isolation_level
	}
	// The interpreter reads these one by one: a short body fails on the
	// first field that does not fit, with the same error.
	if pos, err = skipAt(pos, end, fixed); err != nil {
		return err
	}
	if w.ver >= 7 {
		var id, ep int32
		if id, pos, err = i32At(b, pos, end); err != nil {
			return err
		}
		w.sessID = id
		if ep, pos, err = i32At(b, pos, end); err != nil {
			return err
		}
		w.sessEpoch = ep
		if !w.learn && !w.resum {
			w.p.sessStart(id, ep)
		}
	}
	// Per partition: partition (captured), current_leader_epoch (v9+),
	// fetch_offset, last_fetched_epoch (v12+), log_start_offset (v5+),
	// partition_max_bytes.
	rest := 8 + 4
	if w.ver >= 9 {
		rest += 4
	}
	if w.ver >= 12 {
		rest += 4
	}
	if w.ver >= 5 {
		rest += 8
	}
	var n int
	if n, pos, err = arrAt(b, pos, end, flex); err != nil {
		return err
	}
	for range n {
		start := pos
		w.beginTopic()
		if pos, err = w.topicKey(b, pos, end, flex); err != nil {
			return err
		}
		var m int
		if m, pos, err = arrAt(b, pos, end, flex); err != nil {
			return err
		}
		for range m {
			pstart := pos
			var v int32
			if v, pos, err = i32At(b, pos, end); err != nil {
				return err
			}
			w.partition(v)
			if pos, err = skipAt(pos, end, rest); err != nil {
				return err
			}
			if pos, err = endStruct(b, pos, end, flex, pstart); err != nil {
				return err
			}
		}
		if flex {
			if pos, err = tagsAt(b, pos, end); err != nil {
				return err
			}
		}
		w.endTopic()
		if pos == start {
			return errEmptyElement
		}
	}
	if w.ver >= 7 {
		if n, pos, err = arrAt(b, pos, end, flex); err != nil {
			return err
		}
		for range n {
			start := pos
			if w.ver <= 12 {
				if _, _, pos, err = strAt(b, pos, end, flex, false); err != nil {
					return err
				}
			} else if pos, err = skipAt(pos, end, 16); err != nil {
				return err
			}
			var k int
			if k, pos, err = arrAt(b, pos, end, flex); err != nil {
				return err
			}
			if pos, err = skipAt(pos, end, 4*k); err != nil {
				return err
			}
			if pos, err = endStruct(b, pos, end, flex, start); err != nil {
				return err
			}
		}
	}
	if w.ver >= 11 {
		if _, _, pos, err = strAt(b, pos, end, flex, false); err != nil {
			return err
		}
	}
	return w.endBody(b, pos, end, flex)
}

// topicKey reads a topic's name (v0-12) or id (v13+), as kName and kID.
func (w *walker) topicKey(b []byte, pos, end int, flex bool) (int, error) {
	if w.ver <= 12 {
		off, n, next, err := strAt(b, pos, end, flex, false)
		if err != nil {
			return pos, err
		}
		w.nameOff, w.nameLen = off, n
		return next, nil
	}
	if 16 > end-pos {
		return pos, errTruncated
	}
	w.idOff = pos
	return pos + 16, nil
}

// endStruct ends an array element that began at start: its tagged fields
// in flexible versions, and the interpreter's check that it was not empty.
func endStruct(b []byte, pos, end int, flex bool, start int) (int, error) {
	if flex {
		var err error
		if pos, err = tagsAt(b, pos, end); err != nil {
			return pos, err
		}
	}
	if pos == start {
		return pos, errEmptyElement
	}
	return pos, nil
}

// endBody reads the body's tagged fields in flexible versions and leaves
// the reader at the end of what the walker read.
func (w *walker) endBody(b []byte, pos, end int, flex bool) error {
	if flex {
		var err error
		if pos, err = tagsAt(b, pos, end); err != nil {
			return err
		}
	}
	w.r.pos = pos
	return nil
}
