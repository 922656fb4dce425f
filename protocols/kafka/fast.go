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
// an index and a record set.
func (w *walker) produce() error {
	r := &w.r
	if w.ver >= 3 {
		if _, _, err := r.str(true); err != nil {
			return err
		}
	}
	acks, err := r.i16()
	if err != nil {
		return err
	}
	if acks == 0 && w.f != nil {
		w.f.NoReply = true
	}
	if err := r.skip(4); err != nil {
		return err
	}
	n, err := r.array(false)
	if err != nil {
		return err
	}
	for range n {
		start := r.pos
		w.beginTopic()
		if err := w.topicKey(); err != nil {
			return err
		}
		m, err := r.array(false)
		if err != nil {
			return err
		}
		for range m {
			pstart := r.pos
			v, err := r.i32()
			if err != nil {
				return err
			}
			w.partition(v)
			if err := r.bytes(true); err != nil {
				return err
			}
			if err := w.endStruct(pstart); err != nil {
				return err
			}
		}
		if r.flex {
			if err := r.tags(); err != nil {
				return err
			}
		}
		w.endTopic()
		if r.pos == start {
			return errEmptyElement
		}
	}
	return w.endBody()
}

// fetch reads a Fetch body: replica_id (v0-14), max_wait_ms, min_bytes,
// max_bytes (v3+), isolation_level (v4+), the session id and epoch (v7+),
// the topics, each a name (v0-12) or an id (v13+) and partitions, the
// forgotten topics (v7+) and rack_id (v11+).
func (w *walker) fetch() error {
	r := &w.r
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
	if err := r.skip(fixed); err != nil {
		return err
	}
	if w.ver >= 7 {
		id, err := r.i32()
		if err != nil {
			return err
		}
		w.sessID = id
		ep, err := r.i32()
		if err != nil {
			return err
		}
		w.sessEpoch = ep
		if !w.learn {
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
	n, err := r.array(false)
	if err != nil {
		return err
	}
	for range n {
		start := r.pos
		w.beginTopic()
		if err := w.topicKey(); err != nil {
			return err
		}
		m, err := r.array(false)
		if err != nil {
			return err
		}
		for range m {
			pstart := r.pos
			v, err := r.i32()
			if err != nil {
				return err
			}
			w.partition(v)
			if err := r.skip(rest); err != nil {
				return err
			}
			if err := w.endStruct(pstart); err != nil {
				return err
			}
		}
		if r.flex {
			if err := r.tags(); err != nil {
				return err
			}
		}
		w.endTopic()
		if r.pos == start {
			return errEmptyElement
		}
	}
	if w.ver >= 7 {
		n, err := r.array(false)
		if err != nil {
			return err
		}
		for range n {
			start := r.pos
			if w.ver <= 12 {
				if _, _, err := r.str(false); err != nil {
					return err
				}
			} else if err := r.skip(16); err != nil {
				return err
			}
			k, err := r.array(false)
			if err != nil {
				return err
			}
			if err := r.skip(4 * k); err != nil {
				return err
			}
			if err := w.endStruct(start); err != nil {
				return err
			}
		}
	}
	if w.ver >= 11 {
		if _, _, err := r.str(false); err != nil {
			return err
		}
	}
	return w.endBody()
}

// topicKey reads a topic's name (v0-12) or id (v13+), as kName and kID.
func (w *walker) topicKey() error {
	r := &w.r
	if w.ver <= 12 {
		off, n, err := r.str(false)
		if err != nil {
			return err
		}
		w.nameOff, w.nameLen = off, n
		return nil
	}
	if err := r.need(16); err != nil {
		return err
	}
	w.idOff = r.pos
	r.pos += 16
	return nil
}

// endStruct ends an array element that began at start: its tagged fields
// in flexible versions, and the interpreter's check that it was not empty.
func (w *walker) endStruct(start int) error {
	if w.r.flex {
		if err := w.r.tags(); err != nil {
			return err
		}
	}
	if w.r.pos == start {
		return errEmptyElement
	}
	return nil
}

// endBody reads the body's tagged fields in flexible versions.
func (w *walker) endBody() error {
	if w.r.flex {
		return w.r.tags()
	}
	return nil
}
