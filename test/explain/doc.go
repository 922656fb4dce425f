// Package explain checks that controlplane/explain judges flows exactly as
// the data plane's engine (dataplane/enforce) does: the control plane may
// not import the data plane, so this test, which may import both, compiles
// generated policies for both and compares their decisions on generated
// messages.
package explain
