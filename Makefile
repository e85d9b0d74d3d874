# Two commands on a fresh machine: `make demo` and `make test`.  Both run `make setup` first,
# which is idempotent: the venv is (re)installed only when a requirements file changes (stamp
# keyed on their hash), the colcon build is incremental.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
WS     := .ws
ROOT   := $(abspath .)
VPY    := $(ROOT)/$(VENV)/bin/python
REQ_HASH := $(shell cat requirements/*.txt setup.py 2>/dev/null | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.stvg-setup-$(REQ_HASH)
INSTALL := $(ROOT)/$(WS)/install/stvg_ros
PYTEST_ARGS ?=
# CMake refuses to export include paths inside the source tree, and the venv (with NumPy's
# headers, which rosidl's Python type support exports) lives in it: build against a link to
# NumPy's include directory from outside the tree.
NUMPY_LINK := $(HOME)/.cache/stvg_ros/numpy-include-$(shell echo $(ROOT) | sha256sum | cut -c1-12)

# The venv is the ROS 2 underlay (Kilted from PyPI wheels); the colcon install space overlays it.
ROS_ENV := PATH="$(ROOT)/$(VENV)/bin:$$PATH" \
	CMAKE_PREFIX_PATH="$(ROOT)/$(VENV)" \
	AMENT_PREFIX_PATH="$(INSTALL):$(ROOT)/$(VENV)" \
	PYTHONPATH="$(INSTALL)/lib/python3.11/site-packages$${PYTHONPATH:+:$$PYTHONPATH}" \
	LD_LIBRARY_PATH="$(INSTALL)/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" \
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

.PHONY: help setup build test demo clean

help:
	@echo "make demo   - set up (first time: a few minutes) and run the node on the bundled clip"
	@echo "make test   - set up and run the whole test suite (core and ROS)"
	@echo "make setup  - only the set-up: .venv with ROS 2 Kilted wheels + torch CPU, colcon build into .ws/"
	@echo "make clean  - remove the colcon workspace (.ws) and out/"

setup: $(STAMP) build

$(STAMP): requirements/torch.txt requirements/core.txt requirements/ros.txt requirements/test.txt setup.py
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing torch (CPU) and the pinned requirements into $(VENV) (log: $(VENV)/setup.log)"
	@# torch first, alone, from the pinned CPU wheel: nothing after it may pull another torch
	@$(VENV)/bin/pip install -r requirements/torch.txt > $(VENV)/setup.log 2>&1 \
		|| { tail -30 $(VENV)/setup.log; echo "setup: installing torch failed (full log: $(VENV)/setup.log)"; exit 1; }
	@$(VENV)/bin/pip install -c requirements/torch.txt -r requirements/core.txt -r requirements/ros.txt \
		>> $(VENV)/setup.log 2>&1 \
		|| { tail -30 $(VENV)/setup.log; echo "setup: pip install failed (full log: $(VENV)/setup.log)"; exit 1; }
	@# test data (photographs in scikit-image's wheel): files only, so without its dependencies
	@$(VENV)/bin/pip install --no-deps -r requirements/test.txt >> $(VENV)/setup.log 2>&1 \
		|| { tail -30 $(VENV)/setup.log; echo "setup: pip install -r requirements/test.txt failed"; exit 1; }
	bash scripts/fix_ros_wheels.sh $(VENV)
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

demo: setup
	@$(ROS_ENV) $(INSTALL)/lib/stvg_ros/stvg_demo --out out/demo.png

clean:
	rm -rf $(WS) out
