# tcu-agent — the one build entry point. `make help` lists the targets.

SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --dirty --always 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
CMDS    := tcu-agent tcu-sim tcu-devcloud
FUZZTIME ?= 30s
# FUZZTIME_COMMANDS: the command admission property (frame sent => every rule held).
FUZZTIME_COMMANDS ?= 10m

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## build static binaries for this machine into build/
	@mkdir -p build
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o build/ $(addprefix ./cmd/,$(CMDS))

.PHONY: cross
cross: ## build static linux/arm64 and linux/arm (GOARM=7) binaries into build/<os>_<arch>/
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build $(GOFLAGS_BUILD) -o build/linux_arm64/ $(addprefix ./cmd/,$(CMDS))
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build $(GOFLAGS_BUILD) -o build/linux_armv7/ $(addprefix ./cmd/,$(CMDS))
	@file build/linux_arm64/tcu-agent build/linux_armv7/tcu-agent

.PHONY: test
test: ## run every unit and end-to-end test with the race detector
	$(GO) test -race -shuffle=on -short -timeout 20m ./...

.PHONY: test-system
test-system: ## run the system tests (real binary, SIGKILL) verbosely, with their per-run tables
	$(GO) test -race -count=1 -v ./agent/agenttest/

IDLECOST_DURATION ?= 10m

.PHONY: idlecost
idlecost: ## idle cost of the real binary per profile: wake-ups/s, CPU, wire bytes, parked command latency (docs/perf/idle.md)
	IDLECOST_DURATION=$(IDLECOST_DURATION) $(GO) test -tags idlecost -run IdleCost -v -count=1 -timeout 0 ./agent/agenttest/

.PHONY: powercut
powercut: ## power-cut test of the buffer on the hostile disk (scripts/hostiledisk): writer in qemu, cuts replayed from its write log, verified in qemu (docs/perf/powercut.md)
	bash scripts/powercut.sh

SYSTEMD_TEST_ARCH ?= amd64

.PHONY: systemd-test
systemd-test: ## the .deb under a real systemd: Debian 12 guest in qemu, install/upgrade/remove/purge, watchdog (SYSTEMD_TEST_ARCH=amd64)
	bash scripts/systemd-test.sh $(SYSTEMD_TEST_ARCH)

.PHONY: demo
demo: ## run simulated vehicle + local dev cloud + agent (~3 min): drive, park, lock and unlock, push a new signal through a configuration job, bus asleep, unlock wakes it; exit
	@bash scripts/demo.sh

.PHONY: vmtest
vmtest: ## run the SocketCAN tests on a real kernel (qemu, vcan) for amd64 and arm64
	bash scripts/vmtest.sh amd64 arm64

.PHONY: lint
lint: golangci-lint ## gofmt, go vet and golangci-lint (.golangci.yml)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...

# golangci-lint is pinned; `make golangci-lint` installs that version with
# `go install` (through the module proxy) unless it is already there.
GOLANGCI_LINT_VERSION := 2.15.0
GOLANGCI_LINT ?= $(shell $(GO) env GOPATH)/bin/golangci-lint

.PHONY: golangci-lint
golangci-lint: ## install the pinned golangci-lint if missing
	@if [ "$$($(GOLANGCI_LINT) version --short 2>/dev/null)" != "$(GOLANGCI_LINT_VERSION)" ]; then \
	  echo "installing golangci-lint v$(GOLANGCI_LINT_VERSION) to $(GOLANGCI_LINT)"; \
	  GOBIN=$(dir $(GOLANGCI_LINT)) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$(GOLANGCI_LINT_VERSION); \
	fi

.PHONY: tidy-check
tidy-check: ## fail when go.mod/go.sum are not `go mod tidy` clean
	$(GO) mod tidy -diff

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 30s) each; FuzzAdmission for FUZZTIME_COMMANDS (10m)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    t=$(FUZZTIME); [ "$$f" = FuzzAdmission ] && t=$(FUZZTIME_COMMANDS); \
	    echo "== $$pkg $$f ($$t)"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $$t $$pkg || exit 1; \
	  done; \
	done

.PHONY: bench
bench: ## run the benchmarks once (numbers go to docs/performance.md)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

.PHONY: clean
clean: ## remove build output
	rm -rf build dist

-include packaging/package.mk
