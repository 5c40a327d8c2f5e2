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

# Keys for the demo only, generated once per clone and kept in var/.
$(DEMO_ENV): | $(VENV)/.installed
	@mkdir -p var
	@{ echo "VBSF_DEBUG=true"; \
	   echo "VBSF_ENCRYPTION_KEYS=$$(VBSF_DEBUG=true $(BIN)/python manage.py generate_encryption_key)"; \
	   echo "VBSF_SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')"; \
	   echo "VBSF_PUBLIC_URL=http://127.0.0.1:8000"; \
	   echo "VBSF_SALESFORCE_SIMULATOR_URL=http://127.0.0.1:8765"; \
	   echo "VBSF_HTTPS=false"; } > $@

demo: $(VENV)/.installed $(DEMO_ENV)
	@set -a; . ./$(DEMO_ENV); set +a; \
	$(BIN)/python manage.py migrate --verbosity 0 && \
	$(BIN)/python manage.py createcachetable && \
	$(BIN)/python manage.py seed_demo && \
	exec $(BIN)/python manage.py run_demo

test: $(VENV)/.installed
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
