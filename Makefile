# Two entry points, each works on a fresh machine on its own:
#   make demo   set up .venv/ and train the default job on built-in data
#   make test   set up .venv/ and run the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-all
# The test set-up installs every optional extra, so nothing is skipped on a fresh machine or in CI.
TEST_EXTRAS := dev,all

.PHONY: demo test setup bench clean

setup: $(STAMP)

# The pinned CPU build of torch goes in first, so the open range in pyproject.toml
# is already satisfied and pip never pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tamenet train

$(TEST_STAMP): $(STAMP) pyproject.toml
	$(VENV)/bin/pip install --quiet -e '.[$(TEST_EXTRAS)]'
	touch $(TEST_STAMP)

test: $(TEST_STAMP)
	$(VENV)/bin/python -m pytest

bench: $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[bench]'
	$(VENV)/bin/python bench/bench_core.py

clean:
	rm -rf $(VENV) runs
