# MCloudTT — one Makefile for the whole monorepo. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
MODULES  := pkg services/broker services/bigquery-adapter services/health-gateway tools/loadgen tools/infra
PKGS     := $(foreach m,$(MODULES),./$(m)/...)
SERVICES := broker bigquery-adapter health-gateway
BIN      := bin
FUZZTIME ?= 60s
FUZZ_PKGS := ./pkg/mqtt ./pkg/topic ./pkg/bus ./services/broker/internal/auth
TF       ?= $(shell command -v terraform || command -v tofu)
PROJECT  ?=
BENCHTIME ?= 1s
TEST_TIMEOUT ?= 9m

export GOFLAGS ?= -buildvcs=false

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install missing system packages and tools (see scripts/deps.sh)
	@scripts/deps.sh base browser bq

.PHONY: build
build: ## build every service binary into bin/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(foreach s,$(SERVICES),./services/$(s)/cmd/$(s))

.PHONY: test
test: deps ## run every module's tests with -race (fuzz seed corpora included)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

CHAOS_DURATION   ?= 5m
CHAOS_FAULT_EVERY ?= 4s
CHAOS_RUNS       ?= 1
CHAOS_SESSIONS   ?= 50
CHAOS_FSYNC      ?= always

.PHONY: chaos
chaos: ## the durable-session fault test, long: CHAOS_DURATION (5m) CHAOS_FAULT_EVERY (4s) CHAOS_RUNS (1) CHAOS_SESSIONS (50) CHAOS_FSYNC (always) CHAOS_SEED
	@scripts/deps.sh base
	@mkdir -p $(BIN)
	@for i in $$(seq $(CHAOS_RUNS)); do \
	  echo "== chaos run $$i of $(CHAOS_RUNS)"; \
	  MCLOUDTT_CHAOS_DURATION=$(CHAOS_DURATION) MCLOUDTT_CHAOS_FAULT_EVERY=$(CHAOS_FAULT_EVERY) \
	  MCLOUDTT_CHAOS_SESSIONS=$(CHAOS_SESSIONS) MCLOUDTT_CHAOS_FSYNC=$(CHAOS_FSYNC) MCLOUDTT_CHAOS_SEED=$(CHAOS_SEED) \
	  $(GO) test -count=1 -v -timeout 2h -run '^TestChaosDurableSessions$$' ./services/broker/cmd/broker \
	    > $(BIN)/chaos-$$i.log 2>&1; rc=$$?; \
	  grep -E 'chaos seed|faults:|publisher|^(--- |ok|FAIL)' $(BIN)/chaos-$$i.log | grep -v '^{'; \
	  [ $$rc -eq 0 ] || { echo "chaos run $$i failed; full log in $(BIN)/chaos-$$i.log"; exit 1; }; \
	done

.PHONY: bench
bench: ## codec, topic index and broker hot-path Go benchmarks
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./pkg/... ./services/broker/internal/broker

.PHONY: fuzz
fuzz: ## fuzz every target for FUZZTIME each (default 60s)
	@for p in $(FUZZ_PKGS); do \
	  for t in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
	    echo "== $$p $$t"; $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s $$p || exit 1; \
	  done; done

.PHONY: lint
lint: ## gofmt check and go vet on every module; shellcheck on the scripts that set the project up and run it
	@scripts/deps.sh lint
	@out=$$(gofmt -l $(MODULES) tools/monitoring); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd tools/monitoring && GOWORK=off $(GO) vet ./...
	shellcheck -x .ci/run scripts/*.sh

.PHONY: tidy
tidy: ## go mod tidy in every module, then go work sync
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy); done
	$(GO) work sync

.PHONY: interop
interop: ## Eclipse Paho interoperability suites v3+v5 against a fresh broker (PAHO_TESTING_DIR)
	@scripts/interop.sh

.PHONY: deps-bench
deps-bench:
	@scripts/deps.sh bench

.PHONY: bench-compare
bench-compare: deps-bench ## S1–S5 against our broker, mosquitto and mochi; one table, raw JSON in bin/bench-results/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/loadgen ./tools/loadgen
	cd tools/bench/mochi && GOWORK=off $(GO) build -o $(CURDIR)/$(BIN)/mochi-bench .
	$(GO) build -o $(BIN)/broker ./services/broker/cmd/broker || { rm -f $(BIN)/broker; echo "bench-compare: broker build failed; its rows are reported as failed" >&2; }
	SKIP_BUILD=1 GO=$(GO) BIN=$(BIN) scripts/bench-compare.sh

.PHONY: bench-cluster
bench-cluster: deps-bench ## S1/S3 on one replica vs across two replicas on Redis, the Redis Pub/Sub ceiling, Redis commands per message
	@scripts/bench-cluster.sh

.PHONY: bench-adapter
bench-adapter: deps deps-bench ## adapter rows/s and CPU per 100k rows into the emulator (batch 100/500/2000); broker S1 with the export off vs on
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/loadgen ./tools/loadgen
	$(GO) build -o $(BIN)/broker ./services/broker/cmd/broker
	GO=$(GO) BIN=$(BIN) scripts/bench-adapter.sh

.PHONY: bench-conns
bench-conns: deps-bench ## idle connections (10k, 100k or the open-files limit): RSS per connection, connects/s, CPU per connect; plain, TLS RSA/ECDSA with and without resumption; ours vs mosquitto
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/loadgen ./tools/loadgen
	$(GO) build -o $(BIN)/broker ./services/broker/cmd/broker
	BIN=$(BIN) scripts/bench-conns.sh

.PHONY: bench-tls
bench-tls: deps-bench ## S1 against one broker over TCP and over TLS, with the ratio
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/loadgen ./tools/loadgen
	$(GO) build -o $(BIN)/broker ./services/broker/cmd/broker
	BIN=$(BIN) scripts/bench-tls.sh

CONNECT_BENCHTIME ?= 3000x

.PHONY: bench-connect
bench-connect: ## CONNECT rate (dial to CONNACK) with JWT RS256/ES256 (device registry), password file (PBKDF2) and anonymous; a token check and a registry lookup alone; publish rate after JWT vs anonymous CONNECT
	@scripts/deps.sh base
	$(GO) test -run='^$$' -bench='^BenchmarkConnect$$' -benchmem -benchtime=$(CONNECT_BENCHTIME) ./services/broker/internal/app
	$(GO) test -run='^$$' -bench='^BenchmarkPublishAfterAuth$$' -benchtime=500000x -count=2 ./services/broker/internal/app
	$(GO) test -run='^$$' -bench='^(BenchmarkJWTVerify|BenchmarkPasswordsCheck)$$' -benchmem -benchtime=$(BENCHTIME) ./services/broker/internal/auth
	$(GO) test -run='^$$' -bench='^BenchmarkDeviceKeys$$' -benchmem -benchtime=$(BENCHTIME) ./pkg/devices

.PHONY: test-infra
test-infra: ## real validators: kube-apiserver + etcd on loopback, tofu, promtool, offline images (builds them, and the BigQuery emulator the live-metrics check starts, first)
	@scripts/deps.sh infra bq
	@scripts/infra-test.sh

.PHONY: images
images: ## build the service images mcloudtt-<service>:dev with docker (needs a running container engine)
	@docker info >/dev/null 2>&1 || { echo "images: no container engine answers 'docker info'; make test-infra assembles the images offline" >&2; exit 1; }
	@for s in $(SERVICES); do echo "== mcloudtt-$$s"; DOCKER_BUILDKIT=1 docker build -f services/$$s/Dockerfile -t mcloudtt-$$s:dev . || exit 1; done

.PHONY: dev
dev: ## skaffold dev -p local: build, deploy to the current kube context, port-forward 1883/8883/8083/8090
	skaffold dev -p local

.PHONY: deploy
deploy: ## skaffold run -p gke: build, push to Artifact Registry and deploy to the GKE cluster terraform made
	skaffold run -p gke --default-repo="$$($(TF) -chdir=terraform output -raw image_repository)"

.PHONY: tf-plan
tf-plan: ## terraform plan of the GKE stack into terraform/tfplan (PROJECT=<project id>; init first, see README)
	@test -n "$(PROJECT)" || { echo "tf-plan: set PROJECT=<google cloud project id>" >&2; exit 1; }
	$(TF) -chdir=terraform plan -var="project_id=$(PROJECT)" -out=tfplan

.PHONY: run
run: ## start the local stack (see README): MQTT at once, the BigQuery emulator once built in the background; Ctrl-C stops it
	@scripts/deps.sh base
	@$(MAKE) --no-print-directory build
	@BIN=$(BIN) scripts/run-local.sh

BQ_PROJECT  ?= mcloudtt-local
BQ_ENDPOINT ?= http://127.0.0.1:9050

export Q # read from the environment in the recipe, so SQL with backticks or quotes reaches it as is

.PHONY: query
query: ## run Q (SQL, or a query name from docs/queries.sql) on the emulator of make run (BQ_ENDPOINT= BQ_PROJECT=<p>: BigQuery)
	@test -n "$$Q" || { echo "query: set Q='SELECT ...' or Q=<name from docs/queries.sql>" >&2; exit 1; }
	@$(GO) run ./services/bigquery-adapter/cmd/bigquery-adapter query -project "$(BQ_PROJECT)" -endpoint "$(BQ_ENDPOINT)" -file docs/queries.sql "$$Q"

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
