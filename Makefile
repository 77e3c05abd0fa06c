# chimirror: build, test and benchmark.
# `make` (the same as `make test`) installs what the tests need, then vets and
# tests everything. CI runs it through .ci/run (CI=true, no stdin), so every
# step here must be non-interactive.

GO ?= go
# staticcheck, pinned; make deps installs it through the module proxy.
STATICCHECK_VERSION := v0.8.2
STATICCHECK = $(shell $(GO) env GOPATH)/bin/staticcheck

.DEFAULT_GOAL := test
.PHONY: test test-cgroup2 deps vet build bench

# test: every check CI runs.
test: deps vet
	$(GO) test -race -count=1 ./...
	@# A build without cgo has the Go init, not the C one: its sandbox tests
	@# run it as such a build does (AllThreadsSyscall works only there).
	CGO_ENABLED=0 $(GO) test -count=1 ./sandbox

# test-cgroup2: the suites that touch cgroups, under a real cgroup v2 kernel
# that qemu boots (this host may be v1 or hybrid): see ci/cgroup2/run.sh.
# It exits with the tests' status; where no VM can boot it says why in one
# line and fails. About 10 minutes here (two cores, software emulation).
test-cgroup2: deps
	./ci/cgroup2/run.sh

# vet: static checks. go.mod and go.sum must be tidy (no drift between the
# imports and the requirements), go vet, and staticcheck with its default
# checks (bugs SA*, simplifications S*, the default style checks ST*, and
# unused code U1000).
vet: deps
	@# gofmt: files it would change are listed, and fail the check.
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || { echo "gofmt: run gofmt -w on the files above" >&2; exit 1; }
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@# Linux-only code lives in _linux.go files with fallbacks: keep other
	@# OSes and cgo-less builds compiling.
	GOOS=darwin $(GO) build ./...
	CGO_ENABLED=0 $(GO) build ./...

# ---- deps: install whatever the tests need that is missing -----------------
# Runs as root on Debian in CI; use `apt-get install -y`, never a prompt.
deps:
	@command -v $(GO) >/dev/null 2>&1 || { echo "make deps: '$(GO)' is not on PATH; install Go $$(sed -n 's/^go //p' go.mod) first" >&2; exit 1; }
	@$(GO) version
	@# Browser tests drive Debian's chromium; install it when missing and root,
	@# otherwise those tests skip with one line saying so.
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make deps: installing chromium for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make deps: chromium missing and not root: browser tests will skip"; fi; \
	fi
	@# Proxy tests put Debian's nginx in front of a server; install it when
	@# missing and root, otherwise those tests skip with one line saying so.
	@# The tests run their own nginx: the package's service must neither
	@# start (a policy-rc.d, unless the machine has one) nor stay enabled.
	@if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make deps: installing nginx for the proxy tests (not as a service)"; \
	    policy=; \
	    if [ ! -e /usr/sbin/policy-rc.d ]; then \
	      policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' >"$$policy" && chmod 755 "$$policy"; \
	    fi; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	    status=$$?; \
	    if [ -n "$$policy" ]; then rm -f "$$policy"; fi; \
	    if [ -d /run/systemd/system ]; then systemctl stop nginx; \
	    elif [ -s /run/nginx.pid ]; then /usr/sbin/nginx -s quit; fi; \
	    if [ $$status = 0 ]; then update-rc.d nginx disable >/dev/null; fi; \
	    exit $$status; \
	  else echo "make deps: nginx missing and not root: proxy tests will skip"; fi; \
	fi
	@# make test-cgroup2 boots Debian's kernel (its vmlinuz alone: INITRD=No
	@# keeps the package from building an initramfs, which takes minutes
	@# and which the VM does not use) under qemu, from an initramfs of
	@# busybox-static. Installed when missing and root, otherwise
	@# test-cgroup2 says what is missing and fails.
	@missing=; \
	command -v qemu-system-x86_64 >/dev/null 2>&1 || missing="$$missing qemu-system-x86"; \
	ls /boot/vmlinuz-* >/dev/null 2>&1 || missing="$$missing linux-image-amd64"; \
	{ command -v busybox >/dev/null 2>&1 && ! ldd "$$(command -v busybox)" >/dev/null 2>&1; } || missing="$$missing busybox-static"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make deps: installing$$missing for make test-cgroup2"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    INITRD=No DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "make deps:$$missing missing and not root: make test-cgroup2 cannot boot its VM"; fi; \
	fi
	@# staticcheck, at the pinned version, built by the go command.
	@if ! $(STATICCHECK) -version 2>/dev/null | grep -q '($(STATICCHECK_VERSION:v%=%))'; then \
	  echo "make deps: installing staticcheck $(STATICCHECK_VERSION)"; \
	  $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi
# ---- end deps ----------------------------------------------------------------

build:
	$(GO) build -o chimirror ./cmd/chimirror

# bench: the figures of the README's Benchmarks section. The lab is a binary
# of its own, cmd/chimirror-bench: both are built into a temporary directory
# (removed afterwards) and the bench measures that chimirror.
# BENCH_FLAGS passes flags on, e.g. make bench BENCH_FLAGS='--quick --only echo'.
BENCH_FLAGS ?=
bench:
	dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	$(GO) build -o "$$dir/chimirror" ./cmd/chimirror && \
	$(GO) build -o "$$dir/chimirror-bench" ./cmd/chimirror-bench && \
	"$$dir/chimirror-bench" --chimirror "$$dir/chimirror" $(BENCH_FLAGS)
