# Kiln's build, test and release targets. `make help` lists them.

CARGO ?= cargo
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Debian packages the test suites need; `make test` installs the missing ones. qemu-user-static
# runs the arm64 steps of the multi-platform tests (scripts/ensure-binfmt registers it); tmux git is
# the terminal of the progress view's test.
TEST_PACKAGES := busybox-static uidmap skopeo umoci podman openssh-client openssh-server docker-registry apache2-utils openssl libcap2-bin lua5.1 qemu-user-static tmux git

.PHONY: help build test lint crds chart demo e2e bench bench-operator deps fuzz deploy undeploy images

help:
	@echo "make build   build the kiln and kiln-operator binaries (release)"
	@echo "make test    unit and integration tests (installs missing apt packages)"
	@echo "make lint    cargo fmt --check and clippy with warnings denied"
	@echo "make crds    regenerate crds/imagebuild.yaml and the chart's template of it (templates/crd.yaml)"
	@echo "make chart   lint and render the Helm chart (old and new Kubernetes, several value sets), check the"
	@echo "             renderings and the operator's parse of its config, and dry-run them on the test cluster"
	@echo "make e2e     end-to-end suite: deploys Kiln on the cluster KUBECONFIG names (default ../shared/k8s) and runs it"
	@echo "make deploy  build the images with Kiln, load them, install the CRD and the operator (make undeploy removes it)"
	@echo "make demo    a local registry, a base pushed to it, the example built from it and pushed"
	@echo "make bench   Kiln against BuildKit and buildah (bench/bench.py), then registry push/pull against skopeo"
	@echo "             (BENCH_ONLY=cold,noop,... BENCH_PEERS=kiln,buildkit BENCH_QUICK=1 BENCH_SIZES=\"200 500\")"
	@echo "make bench-operator  30 ImageBuilds at once on the test cluster (concurrency 4, 3 namespaces) and"
	@echo "             apply -> Succeeded against a bare Pod, warm caches in fresh pods (cache claim, registry"
	@echo "             cache): bench/results/operator.md (bench/operator.py; BENCH_PARTS=load,overhead,warm)"
	@echo "make fuzz    run every fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS each (default 40) with cargo-fuzz"
	@echo "make images  the worker and operator images, built by Kiln: target/images/kiln-{worker,operator}.tar"
	@echo "             (IMAGE_TAG=dev, IMAGE_REGISTRY=host:port to name and push them, IMAGE_FLAGS=more kiln build flags)"

# The operator is built on its own, so that cargo's feature unification does not link the
# worker's executor into it (scripts/check-operator-links). KILN_PROFILE=dev builds the debug
# binaries instead (and `make images` packs those): CI's end-to-end suite uses them, as `make
# test` has compiled them already, rather than spend 12 minutes on an optimised build.
KILN_PROFILE ?= release
CARGO_PROFILE_FLAG := $(if $(filter release,$(KILN_PROFILE)),--release,)
export KILN_BIN_DIR := target/$(if $(filter release,$(KILN_PROFILE)),release,debug)
build:
	$(CARGO) build $(CARGO_PROFILE_FLAG) -p kiln-worker --bin kiln
	$(CARGO) build $(CARGO_PROFILE_FLAG) -p kiln-operator

# Debian packages the image contexts come from (images/mkcontext): newuidmap/newgidmap, setcap,
# CA certificates, strip.
IMAGE_PACKAGES := uidmap libcap2-bin ca-certificates binutils openssh-client

# The images, built by Kiln itself from the release binaries (images/build; KILN_PROFILE=dev:
# the debug ones).
export IMAGE_TAG IMAGE_REGISTRY IMAGE_FLAGS
images: build
	scripts/ensure-packages $(IMAGE_PACKAGES)
	images/build

deps:
	@if [ -n "$(strip $(TEST_PACKAGES))" ]; then scripts/ensure-packages $(TEST_PACKAGES); fi
	CARGO=$(CARGO) scripts/ensure-binfmt

test: deps
	$(CARGO) test --workspace

lint:
	scripts/check-operator-links
	scripts/check-deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

crds:
	$(CARGO) run -q -p kiln-crds --bin kiln-crdgen -- crds/imagebuild.yaml --chart-template charts/kiln/templates/crd.yaml

# The Helm chart: lint, renderings, the config the operator parses (operator/tests/chart.rs),
# and a server-side dry run on the cluster KUBECONFIG names (the test kit's, started if need be).
chart:
	scripts/chart-check
	$(CARGO) test -q --workspace --test chart

e2e:
	scripts/e2e

deploy:
	scripts/deploy

undeploy:
	scripts/undeploy

demo:
	scripts/demo

# bench/bench.py runs scripts/bench (registry transfers) last, with BENCH_SIZES defaulting to 200.
bench:
	python3 bench/bench.py

# The operator under load, its overhead, and warm caches in fresh pods on the test cluster
# (redeploys Kiln with the limit).
bench-operator:
	python3 bench/operator.py

# Fuzz every target for FUZZ_SECONDS each (default 40): the Dockerfile parse/plan, tar reading
# and extraction (nothing may appear outside the root), .dockerignore matching, word expansion
# and registry documents. cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable
# toolchain accept them. Seeds are checked in under fuzz/seeds/<target> (parse_plan's are the
# front-end corpus); new inputs go to fuzz/corpus/<target>; a crash leaves its input in
# fuzz/artifacts/<target>. Each target's clean run time is printed at the end.
FUZZ_SECONDS ?= 40
# Flags for both `cargo fuzz build` and `cargo fuzz run` (the same, or run rebuilds). The build
# is the longest part of CI (14 min on two cores: some 500 crates with the sanitizer); neither
# 16 codegen units nor dependencies at opt-level 1 shortened it measurably.
FUZZ_FLAGS ?=
FUZZ_TARGETS := parse_plan tar_extract dockerignore word_expand registry_manifest
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build $(FUZZ_FLAGS)
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t; \
		seeds=seeds/$$t; [ $$t = parse_plan ] && seeds=../tests/corpus/frontend; \
		start=$$(date +%s); \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(FUZZ_FLAGS) $$t corpus/$$t $$seeds \
			-- -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
			|| exit 1; \
		echo "fuzz $$t: $$(( $$(date +%s) - start ))s without a finding"; \
	done
