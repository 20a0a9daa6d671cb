# Two commands do all set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: axe install run test test-slow test-fast image bench bench-engine screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list or the torch pin changes.
$(INSTALLED): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $@

install: $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/python -m server

# Debian packages first (installed as root, else named and their tests skipped),
# then the whole suite, the Docker tests included when an engine can run here.
test: $(INSTALLED)
	deploy/test-packages.sh
	$(MAKE) --no-print-directory axe
	tests/run-in-groups.sh $(BIN)/python -ra

# The checks over the whole official test set (MNIST_DIR), minutes each.
test-slow: $(INSTALLED)
	$(BIN)/python -m pytest -ra --slow -m slow

# Everything but the browser and the deployment tests (minutes, not tens of them).
test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -q -m "not browser and not deploy"

# The app image (and, without an image registry, a local Debian base and the
# proxy image); writes deploy/images.env for `docker compose --env-file`.
image:
	$(PYTHON) -m deploy.images

# The digits workload over N = 1…200 (every variant, with the plot), then 50 visitors drawing without
# pause at 60 Hz (ours in PROCESSES = cores processes against one process and the floor), then the per-frame CPU cost
# (the MLP's and the cnn's in one run), then the cnn's frame against zennit's.
bench: $(INSTALLED)
	$(BIN)/python -m benchmarks.latency --plot docs/latency.png --markdown
	$(BIN)/python -m benchmarks.latency --servers server,single,floor --pace continuous --visitors 50 --markdown
	$(BIN)/python -m benchmarks.framecost --models default,cnn
	$(BIN)/python -m benchmarks.cnn

bench-engine: $(INSTALLED)
	$(BIN)/python -m benchmarks.engine

# Re-take the README's screenshots (docs/screenshots) with the browser tests.
screenshots: $(INSTALLED)
	SCREENSHOT_DIR=docs/screenshots $(BIN)/python -m pytest tests/test_page.py tests/test_page_questions.py tests/test_page_cnn.py -k "screenshots or comparison or counterfactual or kiosk_resets"

# axe-core for the accessibility tests (package.json; injected by tests/test_page.py, never served).
# Without npm those tests are skipped, each with the reason.
AXE := node_modules/axe-core/axe.min.js
axe:
	@if [ -f $(AXE) ]; then :; elif command -v npm >/dev/null; then npm install --no-audit --no-fund; \
	else echo "make: npm missing: the axe-core accessibility tests are skipped"; fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
