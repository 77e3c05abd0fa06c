# chimirror: build, test and benchmark.
# `make` (the same as `make test`) installs what the tests need, then vets and
# tests everything. CI runs it through .ci/run (CI=true, no stdin), so every
# step here must be non-interactive.

GO ?= go

.DEFAULT_GOAL := test
.PHONY: test deps vet build bench

# test: every check CI runs.
test: deps vet
	$(GO) test -race -count=1 ./...

vet: deps
	$(GO) vet ./...

# ---- deps: install whatever the tests need that is missing -----------------
# Runs as root on Debian in CI; use `apt-get install -y`, never a prompt.
deps:
	@command -v $(GO) >/dev/null 2>&1 || { echo "make deps: '$(GO)' is not on PATH; install Go $$(sed -n 's/^go //p' go.mod) first" >&2; exit 1; }
	@$(GO) version
# Browser tests will need chromium: drop the leading "#" of the next line.
#	@command -v chromium >/dev/null 2>&1 || { apt-get update && apt-get install -y chromium; }
# ---- end deps ----------------------------------------------------------------

build:
	$(GO) build -o chimirror ./cmd/chimirror

# bench: the figures of the README's Benchmarks section.
bench:
	$(GO) run ./cmd/chimirror bench
