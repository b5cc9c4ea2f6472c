# The two commands a newcomer needs: `make run` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench screenshots browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tooldeck

test: $(STAMP) browser
	$(BIN)/pytest -q

# The browser test of `tooldeck web` drives Debian's chromium. Installed when missing and apt-get
# is there (as root, or through a sudo that asks no password); elsewhere only that test skips.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; \
		elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else echo "chromium missing and apt-get needs root: the browser test will skip"; exit 0; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium \
			|| echo "chromium could not be installed: the browser test will skip"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks

screenshots: $(STAMP) browser
	$(BIN)/python -m tests.screenshots

clean:
	rm -rf $(VENV) .pytest_cache
