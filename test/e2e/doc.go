// Package e2e holds Bulkhead's end-to-end tests of the walking skeleton: each
// test builds its own lab of network namespaces (test/lab) with a real
// redis-server behind bulkhead-proxy and its iptables redirect, the control
// plane on the machine (test/demo's Env) or a test xDS server, and drives it
// with real redis-cli, raw TCP clients opened inside the namespaces and the
// bulkhead CLI. The tests need root, iproute2, iptables, redis-server and
// redis-cli; README.md lists them and how to run one.
//
// The package has no code outside its tests.
package e2e
