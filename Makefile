# The two set-up commands of the README: `make demo` (the main job) and `make test` (the whole suite).
# Each creates the virtual environment when it is missing.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# Test processes: one per core of the 2-core CI machine halves the suite's time (21 → 11 min on a Zen 3 EPYC).
# Whole files go to one worker (--dist loadfile), so module fixtures are built once and the app builds never race.
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

.PHONY: demo test venv bench clean

$(VENV)/.installed: setup.py
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH, or PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed
	@bash android_demo/scripts/install_jvm_tools.sh  # kotlinc + junit4 for the Android core tests; no-op when present
	@bash web_demo/scripts/install_chromium.sh  # Debian chromium for the web_demo end-to-end test; no-op when present

demo: venv
	$(PY) -m tfalign.export --target tflite --out exports/default --force

test: venv
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

bench: venv
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) exports build *.egg-info
