package enforce

import "github.com/bulkhead-io/bulkhead/protocols/l7"

// l7Index is the generic matcher of one (port, peer class): the L7Rules of
// every rule whose generic matcher applies on the port, merged and indexed
// by verb. Ranks are rule indices (by name).
type l7Index struct {
	any   *resIdx        // L7Rules without verbs: any verb
	verbs btab[*verbIdx] // by upper-case verb
}

// verbIdx holds the L7Rules that name one verb.
type verbIdx struct {
	all  *resIdx       // "VERB": any sub-command
	subs btab[*resIdx] // "VERB|SUB", by upper-case sub-command

	subsB map[string]*resIdx // subs while building; nil after build
}

// resIdx is a resource matcher merged over L7Rules.
type resIdx struct {
	// anyRes is the lowest rank of an L7Rule with neither resource nor aux
	// patterns (it covers every resource, and messages naming none).
	anyRes int32
	// anyResAux holds the aux patterns of L7Rules without resource patterns
	// (entries: their ranks).
	anyResAux *patIndex
	// res holds the resource patterns (entries: rank and the L7Rule's aux
	// patterns).
	res *patIndex
}

// cover returns the lowest rank below cur of an L7Rule of r that covers the
// resource in sc.res (when hasRes; otherwise a message naming none) with
// the aux in sc.aux, or cur.
func (r *resIdx) cover(sc *scratch, hasRes bool, cur int32) int32 {
	cur = min(cur, r.anyRes)
	if r.anyResAux != nil {
		cur = r.anyResAux.best(&sc.aux, sc, cur)
	}
	if hasRes && r.res != nil {
		cur = r.res.best(&sc.res, sc, cur)
	}
	return cur
}

// judgeL7 returns the lowest rank below cur of a rule whose L7Rules allow
// the request f, or cur. The L7Rules are the union of those of xs (a Conn's
// class matcher and those its FQDN peers add, at most 1+MaxNamesPerAddr;
// ranks are rule indices of one direction, shared by all). verb and sub are
// f's, upper-cased, or nil when empty or longer than l7.MaxVerb.
//
// A request is allowed when each of its resources (Resource, then
// More[:NMore]; a message naming none counts as one resource that only
// L7Rules without resource patterns cover) is covered by some L7Rule of
// the matcher: its verbs list the verb (or "VERB|SUB" the verb and
// sub-command) or are empty, its aux patterns match f.Aux or are empty, and
// its resource patterns match the resource or are empty. A message with
// Overflow is allowed only when an L7Rule without resource patterns covers
// it. The rank is that of the lowest rule covering the first resource.
//
// cur < noRank means a rule allows every message already (it covers every
// resource); then only the first resource's lowest rank is looked for.
func judgeL7(xs []*l7Index, f *l7.Frame, verb, sub []byte, cur int32) int32 {
	// At most 3 buckets per index; one index (no FQDN matchers) is the
	// common case, and its array is the one zeroed.
	var one [3]*resIdx
	bs := one[:]
	if len(xs) > 1 {
		var all [3 * (1 + MaxNamesPerAddr)]*resIdx
		bs = all[:]
	}
	n := 0
	for _, x := range xs {
		if n+3 > len(bs) {
			break
		}
		if x.any != nil {
			bs[n] = x.any
			n++
		}
		if verb != nil {
			if vi, _ := x.verbs.get(verb); vi != nil {
				if vi.all != nil {
					bs[n] = vi.all
					n++
				}
				if sub != nil {
					if r, _ := vi.subs.get(sub); r != nil {
						bs[n] = r
						n++
					}
				}
			}
		}
	}
	if n == 0 {
		return cur
	}
	buckets := bs[:n]
	var sc scratch
	sc.aux.set(f.Aux)
	if f.Resource == nil {
		for _, b := range buckets {
			cur = b.cover(&sc, false, cur)
		}
		return cur
	}
	sc.res.set(f.Resource)
	if cur < noRank {
		for _, b := range buckets {
			cur = b.cover(&sc, true, cur)
		}
		return cur
	}
	first := int32(noRank)
	for _, b := range buckets {
		first = b.cover(&sc, true, first)
	}
	if first == noRank {
		return cur
	}
	if f.Overflow {
		anyRes := int32(noRank)
		for _, b := range buckets {
			anyRes = b.cover(&sc, false, anyRes)
		}
		if anyRes == noRank {
			return cur
		}
		return first
	}
	for i := 0; i < f.NMore && i < len(f.More); i++ {
		sc.res.set(f.More[i])
		c := int32(noRank)
		for _, b := range buckets {
			c = b.cover(&sc, true, c)
		}
		if c == noRank {
			return cur
		}
	}
	return first
}

// l7Builder collects the L7Rules of a matcher's rules.
type l7Builder struct {
	any   *resIdx
	verbs map[string]*verbIdx
}

// add adds the L7Rule lr of the rule of rank rank.
func (b *l7Builder) add(lr *l7Rule, rank int32) {
	if len(lr.verbs) == 0 {
		b.any = addRes(b.any, lr, rank)
		return
	}
	if b.verbs == nil {
		b.verbs = map[string]*verbIdx{}
	}
	for _, v := range lr.verbs {
		vi := b.verbs[v.verb]
		if vi == nil {
			vi = &verbIdx{}
			b.verbs[v.verb] = vi
		}
		if v.sub == "" {
			vi.all = addRes(vi.all, lr, rank)
			continue
		}
		if vi.subsB == nil {
			vi.subsB = map[string]*resIdx{}
		}
		vi.subsB[v.sub] = addRes(vi.subsB[v.sub], lr, rank)
	}
}

func addRes(r *resIdx, lr *l7Rule, rank int32) *resIdx {
	if r == nil {
		r = &resIdx{anyRes: noRank}
	}
	switch {
	case len(lr.res) == 0 && lr.aux == nil:
		r.anyRes = min(r.anyRes, rank)
	case len(lr.res) == 0:
		if r.anyResAux == nil {
			r.anyResAux = &patIndex{}
		}
		for _, p := range lr.auxPats {
			r.anyResAux.add(p, entry{rank: rank})
		}
	default:
		if r.res == nil {
			r.res = &patIndex{}
		}
		for _, p := range lr.res {
			r.res.add(p, entry{rank: rank, aux: lr.aux})
		}
	}
	return r
}

// build finishes the indices; nil when no L7Rule was added.
func (b *l7Builder) build() *l7Index {
	if b.any == nil && b.verbs == nil {
		return nil
	}
	finish := func(r *resIdx) {
		if r == nil {
			return
		}
		if r.anyResAux != nil {
			r.anyResAux.finish()
		}
		if r.res != nil {
			r.res.finish()
		}
	}
	finish(b.any)
	for _, vi := range b.verbs {
		finish(vi.all)
		for _, r := range vi.subsB {
			finish(r)
		}
		vi.subs = newBtab(vi.subsB, false)
		vi.subsB = nil
	}
	return &l7Index{any: b.any, verbs: newBtab(b.verbs, false)}
}
