# The README's commands. Each does its own set-up and is safe to run again.
.PHONY: setup demo test reset stop

STATE ?= $(if $(RAGBENCH_STATE_DIR),$(RAGBENCH_STATE_DIR),.state)
ORCH := $(STATE)/venv-orchestrator/bin

setup:
	@bash scripts/setup.sh

demo: setup  ## run the whole pipeline on the local target and print the scorecard
	@$(ORCH)/ragbench run

test: setup  ## run every test (unit, integration with real services, end to end)
	@bash scripts/test.sh

stop:  ## stop the local workload and the embedded database if they are running
	@RAGBENCH_WORKLOAD_PYTHON=$(STATE)/venv-workload/bin/python $(STATE)/venv-workload/bin/python -m workload.cli teardown-local --state-dir $(STATE) >/dev/null || true
	@$(ORCH)/ragbench db stop || true

reset: stop  ## delete all state: environments, database, model, logs, results
	rm -rf $(STATE)
