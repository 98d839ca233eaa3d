# Elph server. `make run` starts every module on embedded defaults;
# `make test` runs the whole suite against real services on loopback.

GO        ?= go
BIN       ?= bin/elph
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
TESTFLAGS ?=
FUZZTIME  ?= 10s
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin

.PHONY: run build test bench lint fuzz clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

run: build
	./$(BIN) serve --all

# .ci/services.sh starts or installs what the tests need (or says why it
# cannot) and prints the environment the tests should use.
test:
	@eval "$$(bash .ci/services.sh)" && \
	$(GO) test $(TESTFLAGS) -timeout 15m ./...

bench: build
	$(GO) run ./bench/coldstart -bin ./$(BIN)
	$(GO) run ./bench/sso -bin ./$(BIN)
	$(GO) run ./bench/chat -bin ./$(BIN)
	$(GO) run ./bench/presence -bin ./$(BIN)
	$(GO) run ./bench/push -bin ./$(BIN)
	$(GO) run ./bench/addressbook -bin ./$(BIN)
	$(GO) run ./bench/proxy -bin ./$(BIN)
	$(GO) run ./bench/bus

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Short runs of every fuzz target; the corpus lives in each package's
# testdata/fuzz.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin
