// Package conventions holds tests of the rules of the house that the
// compiler does not check: the direction of imports between the planes and
// that every package says what it is for.
package conventions
