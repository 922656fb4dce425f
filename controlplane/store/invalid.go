package store

import (
	"errors"
	"strings"
)

// ErrInvalid is what errors.Is finds in an Apply refused for its input (a
// policy that fails Validate, or one given twice), as opposed to a failing
// disk.
var ErrInvalid = errors.New("invalid policies")

// InvalidError lists every problem of a refused Apply, one per entry, each
// prefixed with its policy ("ns/name: spec.mode: …").
type InvalidError struct {
	Problems []error
}

func (e *InvalidError) Error() string { return "apply: " + errors.Join(e.Problems...).Error() }

// Unwrap returns the problems, so that errors.Join-aware callers see them
// one by one.
func (e *InvalidError) Unwrap() []error { return e.Problems }

// Is reports whether target is ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Problems flattens err into one line per problem: joined errors are walked,
// and multi-line messages split.
func Problems(err error) []string {
	var out []string
	var walk func(err error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}
