package enforce

import "sync/atomic"

// Engine publishes the current Policy to every connection. The zero value is
// ready to use and holds no Policy. Safe for concurrent use.
//
// The xDS client Compiles each update and Stores the result only when Compile
// succeeded (otherwise it NACKs and the previous Policy stays). Connections
// call Conn.Refresh(engine.Load()) before each batch of messages.
type Engine struct {
	p atomic.Pointer[Policy]
}

// Load returns the current Policy, or nil before the first Store. On nil the
// proxy must fail closed: refuse new connections until a Policy is known (it
// restores the last good one from disk at start, before accepting).
func (e *Engine) Load() *Policy { return e.p.Load() }

// Store makes p the current Policy. Open connections pick it up at their
// next Refresh.
func (e *Engine) Store(p *Policy) { e.p.Store(p) }
