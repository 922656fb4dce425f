package demo

import (
	"context"
	"strings"
)

// Outcomes of a redis-cli invocation, as the demo's tables show them.
const (
	Allowed = "allowed"
	Denied  = "denied (-ERR)"
	Refused = "refused"
)

// Attack is one row of the demo's table: redis-cli run in host From with
// Args (or, without Args, the lines of Stdin on one connection).
type Attack struct {
	From   string
	Action string // what the table shows
	Args   []string
	Stdin  string
	// Expect is the outcome the row must have. For a session (Stdin) it is
	// one outcome per line, joined with ", then ".
	Expect string
}

// Result is an Attack's observed outcome.
type Result struct {
	Attack
	Observed string
	Output   string
}

// OK reports whether the observed outcome is the expected one.
func (r Result) OK() bool { return r.Observed == r.Expect }

// Attacks are the demo's attacks, with the outcomes protect mode must give;
// key is a key cart wrote during discovery, value its value.
func Attacks(key string) []Attack {
	return []Attack{
		{From: "cart", Action: "cart: KEYS *", Args: []string{"KEYS", "*"}, Expect: Denied},
		{From: "cart", Action: `cart: EVAL "return 1" 0`, Args: []string{"EVAL", "return 1", "0"}, Expect: Denied},
		{From: "cart", Action: "cart: CONFIG SET dir /tmp", Args: []string{"CONFIG", "SET", "dir", "/tmp"}, Expect: Denied},
		{From: "cart", Action: "cart: FLUSHALL", Args: []string{"FLUSHALL"}, Expect: Denied},
		{From: "cart", Action: "cart: GET " + key, Args: []string{"GET", key}, Expect: Allowed},
		{From: "intruder", Action: "intruder: PING", Args: []string{"PING"}, Expect: Refused},
		{From: "cart", Action: "cart: FLUSHALL, GET " + key + " (one connection)", Stdin: "FLUSHALL\nGET " + key + "\n", Expect: Denied + ", then " + Allowed},
	}
}

// Monitor turns attacks into what monitor mode must give: everything
// passes. Sessions are dropped (FLUSHALL would run).
func Monitor(attacks []Attack) []Attack {
	var out []Attack
	for _, a := range attacks {
		if a.Stdin != "" {
			continue
		}
		a.Expect = Allowed
		out = append(out, a)
	}
	return out
}

// RunAttacks runs each attack in order.
func (e *Env) RunAttacks(ctx context.Context, attacks []Attack) ([]Result, error) {
	var out []Result
	for _, a := range attacks {
		o, err := e.RedisCLI(ctx, a.From, a.Stdin, a.Args...)
		if err != nil {
			return out, err
		}
		r := Result{Attack: a, Output: o}
		if a.Stdin != "" {
			r.Observed = classifySession(o)
		} else {
			r.Observed = Classify(o)
		}
		out = append(out, r)
	}
	return out, nil
}

// Classify names the outcome of one redis-cli command from its output:
// Refused when the connection failed or was closed, Denied for Bulkhead's
// own -ERR reply, "error: …" for another error reply, else Allowed.
func Classify(out string) string {
	first := strings.TrimSpace(out)
	if i := strings.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	switch {
	case strings.HasPrefix(first, "Could not connect"),
		strings.HasPrefix(first, "Error: "),
		strings.Contains(first, "Connection reset"),
		strings.Contains(first, "Server closed the connection"):
		return Refused
	case strings.HasPrefix(first, "ERR bulkhead"), strings.HasPrefix(first, "(error) ERR bulkhead"):
		return Denied
	case strings.HasPrefix(first, "ERR"), strings.HasPrefix(first, "(error)"),
		strings.HasPrefix(first, "NOPERM"), strings.HasPrefix(first, "WRONGTYPE"):
		return "error: " + first
	}
	return Allowed
}

// classifySession names the outcomes of the replies of a redis-cli session
// (one reply per line, errors followed by an empty line), joined with
// ", then ".
func classifySession(out string) string {
	var parts []string
	lines := strings.Split(out, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // after the last newline
	}
	for i := 0; i < len(lines); i++ {
		c := Classify(lines[i])
		if c != Allowed && i+1 < len(lines) && lines[i+1] == "" {
			i++ // redis-cli follows an error with an empty line
		}
		parts = append(parts, c)
		if c == Refused {
			break
		}
	}
	return strings.Join(parts, ", then ")
}
