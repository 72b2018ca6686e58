# The commands the README names; CI runs `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every Python dependency, pinned with its hashes; `make lock` refreshes it from pyproject.toml.
LOCK := requirements.lock

.PHONY: demo test lint typecheck schema bench-seed clean lock audit

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Keeps each pin that still satisfies pyproject.toml; `make lock UPGRADE=--upgrade` takes the
# newest release of everything.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra test --universal --python-version 3.11 \
		--generate-hashes --quiet $(UPGRADE) -o $(LOCK)

# Known vulnerabilities in the locked Python packages and the npm packages (needs the
# advisory services: PyPI's JSON API per release and npm's bulk advisory endpoint).
audit: $(STAMP) node_modules/.package-lock.json
	$(BIN)/pip-audit --require-hashes --disable-pip --strict -r $(LOCK) \
		$$(sed -n 's/^\([A-Za-z0-9-]\+\).*/--ignore-vuln \1/p' audit-allow.txt)
	npm audit

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

demo: $(STAMP)
	$(BIN)/hub serve --demo

test: $(STAMP) node_modules/.package-lock.json
	$(BIN)/ruff check hub tests bench
	$(BIN)/ruff format --check hub tests bench
	$(BIN)/mypy
	$(BIN)/pytest --cov --cov-report=term

lint: $(STAMP)
	$(BIN)/ruff check hub tests bench
	$(BIN)/ruff format --check hub tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

schema: $(STAMP)
	$(BIN)/hub schema > schema.graphql

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .mypy_cache .ruff_cache .coverage
