# Bulkhead. `make demo` tells the story; `make test` is what CI runs.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
PKGS  := ./...

.PHONY: all build test test-short demo generate lint fuzz bench bench-smoke clean

all: build

# Static, path-free binaries, as a container image ships them: without cgo
# the proxy maps no libc (about 1 MiB less resident at start).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

# The whole suite: unit, parser, allocation and end-to-end tests (root, real
# redis-server/redis-cli, network namespaces, iptables). Ends with a summary.
test: build
	BULKHEAD_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 30m $(PKGS) 2>&1 | tee /tmp/bulkhead-test.log; \
	  rc=$${PIPESTATUS[0]}; \
	  p=$$(grep -c '^ok ' /tmp/bulkhead-test.log); f=$$(grep -c '^FAIL\s' /tmp/bulkhead-test.log); \
	  echo "packages: $$p passed, $$f failed"; exit $$rc

test-short:
	$(GO) test -short -count=1 $(PKGS)

demo: build
	$(BIN)/bulkhead demo --bin $(CURDIR)/$(BIN)

generate:
	$(GO) tool controller-gen object paths=./controlplane/api/v1alpha1/...
	$(GO) tool controller-gen crd paths=./controlplane/api/v1alpha1/... output:crd:dir=deploy/crds
	./hack/gen-proto.sh

lint:
	$(GO) vet $(PKGS)
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) tool staticcheck $(PKGS)

# Runs every fuzz target for FUZZTIME each (default 20s).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./protocols/...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

# Side-by-side load comparisons (direct, HAProxy, Bulkhead) plus go test
# -bench over the parsers and the verdict path; writes
# bench/results/<date>-<commit>.md and latest.md. Root; about 10 minutes.
bench: build
	$(GO) run ./bench/cmd/bench -bin $(CURDIR)/$(BIN) -out bench/results

# The same harness with tiny loads (seconds); make test runs it too, as
# bench/harness's TestSmoke.
bench-smoke: build
	BULKHEAD_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -run '^TestSmoke$$' ./bench/harness

clean:
	rm -rf $(BIN)
