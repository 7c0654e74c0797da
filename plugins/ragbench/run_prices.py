"""Prices frozen into target runs (``target_run_prices``; docs/cost-model.md).

A target run is priced once, when its results are first loaded: with the newest price set of its
provider whose ``as_of`` is not after the target run's start, as ``cost_inputs`` holds it then.
Reloading the run keeps that price; later edits of ``cost_inputs`` (a corrected price set) change
no past run. Repricing history is explicit: :func:`reprice` (``ragbench costs reprice``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

# The price set in force at each selected target run's start, from cost_inputs as it is now:
# hourly components x quantity (per-GB prices are not hourly), and the components themselves.
_IN_FORCE = """
SELECT tr.target_run_id, tr.provider, p.as_of, p.usd_per_hour, COALESCE(p.components, '[]'::jsonb) AS components
FROM target_runs tr
LEFT JOIN LATERAL (
    SELECT ci.as_of,
           COALESCE(sum(ci.price_usd * ci.quantity) FILTER (WHERE ci.unit = 'usd_per_hour'), 0)::double precision
               AS usd_per_hour,
           jsonb_agg(jsonb_build_object('component', ci.component, 'price_usd', ci.price_usd,
                                        'quantity', ci.quantity, 'source', ci.source) ORDER BY ci.component)
               FILTER (WHERE ci.unit = 'usd_per_hour') AS components
    FROM cost_inputs ci
    WHERE ci.provider = tr.provider
      AND ci.as_of = (SELECT max(c.as_of) FROM cost_inputs c
                      WHERE c.provider = tr.provider AND c.as_of <= (tr.started_at AT TIME ZONE 'UTC')::date)
    GROUP BY ci.as_of
) p ON true
"""


def freeze(conn: Connection, target_run_id: int | None = None) -> int:
    """Price a target run (None: every target run) unless it already has a price (a reload keeps the
    first one). Returns how many target runs were priced now."""
    where = "" if target_run_id is None else " WHERE tr.target_run_id = :id"
    return conn.execute(sa.text(
        "INSERT INTO target_run_prices (target_run_id, provider, as_of, usd_per_hour, hourly_components) "
        "SELECT target_run_id, provider, as_of, usd_per_hour, components FROM (" + _IN_FORCE + where +
        ") p ON CONFLICT (target_run_id) DO NOTHING"), {} if target_run_id is None else {"id": target_run_id}).rowcount


@dataclass(frozen=True)
class Repriced:
    run_id: str
    target: str
    old_as_of: date | None
    old_usd_per_hour: float | None
    new_as_of: date | None
    new_usd_per_hour: float | None

    @property
    def changed(self) -> bool:
        return (self.old_as_of, self.old_usd_per_hour) != (self.new_as_of, self.new_usd_per_hour)

    def describe(self) -> str:
        def price(as_of, usd):
            return "not priced" if as_of is None else f"${usd:.4f}/h (as of {as_of})"
        change = "unchanged" if not self.changed else \
            f"{price(self.old_as_of, self.old_usd_per_hour)} -> {price(self.new_as_of, self.new_usd_per_hour)}"
        return f"{self.run_id} {self.target}: {change}"


def reprice(engine: Engine, run_id: str | None = None, since: date | None = None) -> list[Repriced]:
    """Price again, from cost_inputs as it is now, the target runs of one run or those that started on
    or after ``since`` (a UTC day). Returns each target run's old and new price."""
    if (run_id is None) == (since is None):
        raise ValueError("reprice one run or the runs since a day, one of them")
    where = "tr.run_id = :r" if run_id is not None else "(tr.started_at AT TIME ZONE 'UTC')::date >= :since"
    with engine.begin() as conn:
        rows = conn.execute(sa.text(
            "SELECT tr.run_id, tr.target, old.as_of AS old_as_of, old.usd_per_hour AS old_usd, "
            " p.as_of AS new_as_of, p.usd_per_hour AS new_usd, p.target_run_id, p.provider, "
            " CAST(p.components AS text) AS components "
            "FROM (" + _IN_FORCE + " WHERE " + where + ") p JOIN target_runs tr ON tr.target_run_id = p.target_run_id "
            "LEFT JOIN target_run_prices old ON old.target_run_id = tr.target_run_id "
            "ORDER BY tr.started_at, tr.target"),
            {"r": run_id, "since": since}).mappings().all()
        for r in rows:
            conn.execute(sa.text(
                "INSERT INTO target_run_prices (target_run_id, provider, as_of, usd_per_hour, hourly_components, "
                " repriced) VALUES (:id, :p, :a, :u, CAST(:c AS jsonb), true) "
                "ON CONFLICT (target_run_id) DO UPDATE SET provider = EXCLUDED.provider, as_of = EXCLUDED.as_of, "
                " usd_per_hour = EXCLUDED.usd_per_hour, hourly_components = EXCLUDED.hourly_components, "
                " priced_at = now(), repriced = true"),
                {"id": r["target_run_id"], "p": r["provider"], "a": r["new_as_of"], "u": r["new_usd"],
                 "c": r["components"]})
    return [Repriced(r["run_id"], r["target"], r["old_as_of"], r["old_usd"], r["new_as_of"], r["new_usd"])
            for r in rows]
