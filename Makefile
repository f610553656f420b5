# Two commands: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

VENDOR := api/static/vendor
BPMN_JS := api/web/node_modules/bpmn-js/dist

# Exact versions with their hashes, made from pyproject.toml by `make lock`: the runtime's
# (the Docker image installs it) and the runtime's with the test extra (developers and CI).
LOCKS := requirements.lock requirements-test.lock
UV_VERSION := 0.13.9
UV_COMPILE := $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --universal \
              --python-version 3.11 --custom-compile-command 'make lock' $(UV_ARGS)

.PHONY: run test install lint lock browser office bench clean translations

$(STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# After changing the dependencies in pyproject.toml; versions already locked are kept
# unless asked: make lock UV_ARGS=--upgrade
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	$(UV_COMPILE) --extra test -o requirements-test.lock
	$(UV_COMPILE) --constraint requirements-test.lock -o requirements.lock

# Web assets come from npm (bpmn-js, the properties panel) and are served locally: nothing
# loads from the internet. The designer's modeler (api/web/src: bpmn-js, the properties panel
# and its provider of the nd73 namespace, processes/nd73.moddle.json) is bundled by esbuild.
$(VENDOR)/.built: api/web/package.json api/web/package-lock.json $(wildcard api/web/src/*.js) \
                  processes/nd73.moddle.json
	npm ci --prefix api/web --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp $(BPMN_JS)/bpmn-viewer.production.min.js $(BPMN_JS)/bpmn-modeler.production.min.js $(VENDOR)/
	cp $(BPMN_JS)/bpmn-navigated-viewer.production.min.js $(VENDOR)/
	cp -r $(BPMN_JS)/assets/. $(VENDOR)/
	api/web/node_modules/.bin/esbuild api/web/src/studio.js --bundle --minify --format=iife \
	  --global-name=Nd73Studio --log-level=warning --outfile=$(VENDOR)/studio.js
	cp api/web/node_modules/@bpmn-io/properties-panel/dist/assets/properties-panel.css $(VENDOR)/
	mkdir -p $(VENDOR)/swagger-ui
	cp api/web/node_modules/swagger-ui-dist/swagger-ui.css api/web/node_modules/swagger-ui-dist/swagger-ui-bundle.js api/web/node_modules/swagger-ui-dist/swagger-ui-standalone-preset.js $(VENDOR)/swagger-ui/
	touch $@

# The tests' OpenID Connect provider (node oidc-provider, tests/oidc): from npm at install,
# never at run time.
TEST_IDP := tests/oidc/node_modules/.installed
$(TEST_IDP): tests/oidc/package.json tests/oidc/package-lock.json
	npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(VENDOR)/.built $(VENDOR)/bpmn-navigated-viewer.production.min.js $(TEST_IDP)

# the case diagram's viewer (zoom and pan), for checkouts whose assets were built before it
$(VENDOR)/bpmn-navigated-viewer.production.min.js: $(VENDOR)/.built
	cp $(BPMN_JS)/bpmn-navigated-viewer.production.min.js $@

# The message catalogues (api/translations/{vi,en}/LC_MESSAGES/messages.po): message ids found
# in the code (babel.cfg) are added to both with empty words to translate there (tests/
# test_translations.py refuses an empty one) and ids no longer used are dropped; then the .mo
# files the app reads are compiled (they are committed: nothing is built at run time).
TRANSLATIONS := api/translations
translations: $(STAMP)
	PYTHONPATH=. $(BIN)/pybabel extract -F babel.cfg -k t -k say --sort-output \
	  --add-location=file --ignore-dirs='.* _* node_modules static' --project=nd73-workflow \
	  --version=$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) -o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) \
	  --no-fuzzy-matching --ignore-obsolete --width=100
	$(BIN)/pybabel compile --statistics -d $(TRANSLATIONS)
	rm $(TRANSLATIONS)/messages.pot

# Browser tests drive Debian's chromium; install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  [ "$$(id -u)" = 0 ] || { echo "chromium is missing: apt-get install chromium"; exit 1; }; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Official documents are converted to PDF by LibreOffice headless; install its writer (no
# GUI) and the Liberation fonts (metric-compatible with Times New Roman) when missing.
office:
	@command -v soffice >/dev/null 2>&1 || { \
	  [ "$$(id -u)" = 0 ] || { echo "soffice is missing: apt-get install libreoffice-writer-nogui fonts-liberation2"; exit 1; }; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends libreoffice-writer-nogui fonts-liberation2; }

run: install
	$(BIN)/nd73 db upgrade
	$(BIN)/nd73 deploy --by system $(wildcard processes/*/)
	$(BIN)/nd73 demo
	ND73_EMBEDDED_SCHEDULER=1 $(BIN)/nd73 serve

test: install browser office
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff (pycodestyle errors and warnings, pyflakes) on the engine, the API, the benchmarks and
# the tests, and mypy on the engine and the API;
# their settings are in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check engine api bench tests
	$(BIN)/mypy

# One JSON line per figure; e.g. make bench BENCH_ARGS="overhead --overhead-n 1000"
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache api/web/node_modules $(VENDOR)
