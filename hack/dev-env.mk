# `make dev-env` / `make dev-env-down`: the test environment in the background, for humans.
# Included by the main Makefile; PY is the venv python there (the fallback keeps this usable alone).
PY ?= $(shell bash hack/venv.sh)/bin/python
DEV_ENV_DIR := target/dev-env

.PHONY: dev-env
dev-env: ## Start control plane + AWS emulator in the background and install the CRDs
	@echo "dev-env: the first run builds the Kubernetes control plane from the Go module proxy and the emulator venv (README: about 10 minutes with the operator build)"
	@$(PY) hack/testenv.py up --background --keep-state --state-dir $(DEV_ENV_DIR) --crds crds/
	@echo "Environment ready. Use it with:  source $(DEV_ENV_DIR)/env.sh   (stop it: make dev-env-down)"

.PHONY: dev-env-down
dev-env-down: ## Stop the background environment (and the demo's operator)
	@if [ -f $(DEV_ENV_DIR)/operator.pid ]; then kill $$(cat $(DEV_ENV_DIR)/operator.pid) 2>/dev/null || true; rm -f $(DEV_ENV_DIR)/operator.pid; fi
	@$(PY) hack/testenv.py down --state-dir $(DEV_ENV_DIR)
