# The two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_ENV := var/demo.env

.PHONY: demo test test-packages lint format bench soak run worker clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

# Keys for the demo only, generated once per clone and kept in var/. The demo
# runs like production where a newcomer sees it (debug off: the console's own
# error pages, static files through WhiteNoise), on plain http on localhost.
$(DEMO_ENV): | $(VENV)/.installed
	@mkdir -p var
	@{ echo "VBSF_DEBUG=false"; \
	   echo "VBSF_ENCRYPTION_KEYS=$$(VBSF_DEBUG=true $(BIN)/python manage.py generate_encryption_key)"; \
	   echo "VBSF_SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')"; \
	   echo "VBSF_ALLOWED_HOSTS=127.0.0.1,localhost"; \
	   echo "VBSF_HTTPS=false"; } > $@

# `make demo DEMO_FLEET=1000` adds a realistic fleet (seed_demo --fleet);
# DEMO_PORT and DEMO_SIM_PORT move the console and the simulator.
DEMO_FLEET ?= 0
DEMO_PORT ?= 8000
DEMO_SIM_PORT ?= 8765

demo: $(VENV)/.installed $(DEMO_ENV)
	@# An env file from before debug was off for the demo: keep its keys.
	@grep -q '^VBSF_ALLOWED_HOSTS=' $(DEMO_ENV) || { \
	   grep -v -e '^VBSF_DEBUG=' -e '^VBSF_PUBLIC_URL=' \
	     -e '^VBSF_SALESFORCE_SIMULATOR_URL=' $(DEMO_ENV) > $(DEMO_ENV).new; \
	   printf 'VBSF_DEBUG=false\nVBSF_ALLOWED_HOSTS=127.0.0.1,localhost\n' \
	     >> $(DEMO_ENV).new && mv $(DEMO_ENV).new $(DEMO_ENV); }
	@set -a; . ./$(DEMO_ENV); \
	VBSF_PUBLIC_URL=http://127.0.0.1:$(DEMO_PORT); \
	VBSF_SALESFORCE_SIMULATOR_URL=http://127.0.0.1:$(DEMO_SIM_PORT); set +a; \
	$(BIN)/python manage.py migrate --verbosity 0 && \
	$(BIN)/python manage.py createcachetable && \
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0 && \
	$(BIN)/python manage.py seed_demo --fleet $(DEMO_FLEET) && \
	exec $(BIN)/python manage.py run_demo --port $(DEMO_PORT) --simulator-port $(DEMO_SIM_PORT)

# Every test runs, browser and fault tests included: a missing Chromium or
# redis-server fails the run (VBSF_STRICT_TESTS), never skips it.
test: $(VENV)/.installed test-packages
	@mkdir -p var  # the SQLite test database and the embedded broker live here
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	VBSF_STRICT_TESTS=true $(BIN)/python -m pytest $(ARGS)

# Debian packages the tests drive: Chromium (browser tests, through
# Playwright's executable_path) and redis-server (fault tests and the soak
# start private ones; no Redis service is needed). Installed when missing and
# this user can (root, or sudo without a password prompt); otherwise make
# stops and prints the one command to run.
TEST_PACKAGES_MISSING = $(strip \
	$(if $(wildcard /usr/bin/chromium),,chromium) \
	$(if $(shell command -v redis-server 2>/dev/null),,redis-server))

test-packages:
ifneq ($(TEST_PACKAGES_MISSING),)
	@if [ "$$(id -u)" = 0 ]; then \
	   apt-get update -qq; \
	   apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES_MISSING); \
	 elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	   sudo apt-get update -qq; \
	   sudo apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES_MISSING); \
	 else \
	   echo "make test needs Debian packages: $(TEST_PACKAGES_MISSING). Run:"; \
	   echo "  sudo apt-get install -y --no-install-recommends $(TEST_PACKAGES_MISSING)"; \
	   exit 1; \
	 fi
endif

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	$(BIN)/python -m bench $(ARGS)

# The production stack under faults (bench/soak/README.md): PostgreSQL on
# 127.0.0.1:5432 (its own database vbsf_soak), its own redis-server.
# `make soak SOAK_MINUTES=2` is the short run of .ci/run.
SOAK_MINUTES ?= 10
soak: $(VENV)/.installed test-packages
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) $(ARGS)

clean:
	rm -rf var/celery var/test.sqlite3
