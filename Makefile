# The two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_ENV := var/demo.env

.PHONY: demo test lint format bench run worker clean

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

test: $(VENV)/.installed
	@mkdir -p var  # the SQLite test database and the embedded broker live here
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf var/celery var/test.sqlite3
