// Package deploy holds no code: its tests check the install files of this
// folder — the plain manifests (manifests/) are the Helm chart
// (helm/bulkhead) rendered with its defaults, both are accepted by a real
// API server (server-side dry run, CRDs of crds/ installed), and the Grafana
// dashboard (grafana/bulkhead.json) queries only metrics the code exports.
package deploy
