#!/usr/bin/env bash
# Regenerates the Go code of controlplane/api/proto with protoc (Debian's
# protobuf-compiler) and the module's pinned protoc-gen-go/-go-grpc tools.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d); trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
PATH="$bin:$PATH" protoc -I controlplane/api/proto \
  --go_out=. --go_opt=module=github.com/bulkhead-io/bulkhead \
  --go-grpc_out=. --go-grpc_opt=module=github.com/bulkhead-io/bulkhead \
  controlplane/api/proto/bulkhead/v1/*.proto
