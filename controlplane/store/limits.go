package store

import "errors"

// MaxLearnedPolicies bounds the policies the store holds beyond which
// MergeLearned no longer creates one (flows naming ever new segments must
// not grow the store without end); merging into existing policies and
// Apply are not affected.
const MaxLearnedPolicies = 10000

// ErrFull is returned (wrapped) by MergeLearned when a new policy would
// exceed MaxLearnedPolicies.
var ErrFull = errors.New("the store holds as many policies as learning may create")

// maxLearnedPolicies is MaxLearnedPolicies; tests lower it.
var maxLearnedPolicies = MaxLearnedPolicies
