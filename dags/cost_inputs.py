"""cost_inputs: keep the cost model's prices in the results database in step with config/costs.yaml.

Every 15 minutes one task hashes the file and compares the hash with the last one loaded (table
cost_file_loads). Unchanged: the task skips (nothing written). Changed: the file is validated and
loaded into cost_inputs (ragbench.cost_sync), and the asset ``ragbench://cost-inputs`` is updated.
A file that does not validate fails the task with a one-line error naming the field, and is tried
again at the next check. Every rag_benchmark run also loads the file at its start; this DAG makes a
price change visible to the cost views between runs. Operating it: docs/operations.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, dag, task

COST_INPUTS_ASSET = Asset("ragbench://cost-inputs")


@dag(
    dag_id="cost_inputs",
    description="Load config/costs.yaml into the results database when it changes",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=5)},
    tags=["ragbench", "maintenance"],
    doc_md=__doc__,
)
def cost_inputs():
    @task(task_id="load_cost_inputs", outlets=[COST_INPUTS_ASSET])
    def load_cost_inputs() -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from ragbench import cost_sync, db
        from ragbench.errors import RagbenchError

        engine = db.connect()  # an unreachable database fails the try: retried
        db.migrate(engine)
        try:
            result = cost_sync.sync(engine)
        except RagbenchError as exc:  # the file does not validate: no retry, the next check tries again
            raise AirflowFailException(str(exc)) from None
        if not result.changed:
            raise AirflowSkipException(result.describe())  # skipped: no asset update
        print(result.describe(), flush=True)
        return {"path": result.path, "sha256": result.sha256, "rows": result.loaded.rows,
                "inserted": result.loaded.inserted, "updated": result.loaded.updated,
                "deleted": result.loaded.deleted}

    load_cost_inputs()


cost_inputs()
