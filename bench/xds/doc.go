// Package xds benchmarks the Envoy xDS path of the control plane at scale:
// compiling 10,000 rules over 1,000 segments into Envoy resources (full and
// after a one-rule change), publishing them, and a policy change reaching
// 1,000 connected ADS clients (in a process of their own) that ACK it, with
// the control plane's heap per node. Run:
//
//	go test -run '^$' -bench . -benchtime 10x ./bench/xds
//
// Results are recorded in bench/results/xds.txt. TestFanout, which runs in
// `make test`, exercises the same fan-out with fewer clients.
package xds
