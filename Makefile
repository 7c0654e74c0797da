# The README's commands. Each does its own set-up and is safe to run again.
.PHONY: setup demo test airflow reset stop

STATE ?= $(if $(RAGBENCH_STATE_DIR),$(RAGBENCH_STATE_DIR),.state)
ORCH := $(STATE)/venv-orchestrator/bin

setup:
	@bash scripts/setup.sh

demo: setup  ## run the whole pipeline on the local target and print the scorecard
	@$(ORCH)/ragbench run

test: setup  ## run every test (unit, integration with real services, end to end)
	@bash scripts/test.sh

airflow: setup  ## start Airflow (UI and REST API, scheduler, dag-processor, triggerer) on 127.0.0.1
	@$(ORCH)/ragbench airflow up

stop:  ## stop Airflow's services, the local workload and the embedded database if they are running
	@$(ORCH)/ragbench airflow down || true
	@RAGBENCH_WORKLOAD_PYTHON=$(STATE)/venv-workload/bin/python $(STATE)/venv-workload/bin/python -m workload.cli teardown-local --state-dir $(STATE) >/dev/null || true
	@$(ORCH)/ragbench db stop || true

reset: stop  ## delete all state: environments, database, model, logs, results
	rm -rf $(STATE)
