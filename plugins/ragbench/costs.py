"""The cost model's inputs: config/costs.yaml, validated, and loaded into the ``cost_inputs`` table.

The file maps each provider to its dated price sets (``as_of``). Every price set is turned into
one ``cost_inputs`` row per component (``gpu_node``, ``cpu_node``, ``control_plane``,
``load_balancer``, ``nat_gateway``, ``nat_gateway_data``, ``storage``, ``egress``, ...), and the SQL
views (sql/views/010_scorecard.sql, 020_cost.sql) price each target run with the newest set whose
``as_of`` is not after the run's start. See docs/cost-model.md.

Loading is idempotent: rows are upserted on (provider, as_of, component) and only written when a
value differs, so loading the same file again changes nothing. For every provider the file lists,
the file is the whole truth: a component or a price set removed from the file is removed from the
table too (providers the file does not list are left alone).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator
from sqlalchemy.engine import Engine

from ragbench.errors import RagbenchError
from ragbench.paths import PROJECT_ROOT, config_dir
from ragbench.targets import TargetsConfig, load_targets

HOURLY, GB_MONTH, GB = "usd_per_hour", "usd_per_gb_month", "usd_per_gb"
COMPONENT_PATTERN = r"^[a-z][a-z0-9_]{0,40}$"
PRICE_DECIMALS, QUANTITY_DECIMALS = 6, 3  # cost_inputs: price_usd numeric(12, 6), quantity numeric(12, 3)
_LOCK_KEY = 7_163_002  # advisory lock: concurrent loads (two DAG runs starting) apply one at a time


def _decimals(places: int):
    def check(value: float | int | None) -> float | int | None:
        if value is not None and isinstance(value, float):
            exponent = Decimal(repr(value)).as_tuple().exponent
            if isinstance(exponent, int) and -exponent > places:
                raise ValueError(f"at most {places} decimal places (the database keeps {places})")
        return value
    return check


# Prices and quantities are plain YAML numbers: strict, so that "0.52" (a string) or `yes` is an error.
Price = Annotated[float, Field(strict=True, ge=0, le=999_999, allow_inf_nan=False),
                  AfterValidator(_decimals(PRICE_DECIMALS))]
Gigabytes = Annotated[float, Field(strict=True, ge=0, le=999_999_999, allow_inf_nan=False),
                      AfterValidator(_decimals(QUANTITY_DECIMALS))]
Count = Annotated[int, Field(strict=True, ge=0, le=999_999)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodePoolPrice(_Strict):
    component: str = Field(pattern=COMPONENT_PATTERN)  # = the target's node_pools[].pricing_key
    instance_type: str = Field(min_length=1)
    count: Count
    usd_per_hour: Price
    gpu: bool = False
    source: str | None = None
    notes: str | None = None


class HourlyPrice(_Strict):
    """A fee per hour for `count` items: the control plane, load balancers."""
    usd_per_hour: Price
    count: Count = 1
    source: str | None = None
    notes: str | None = None


class NatGatewayPrice(HourlyPrice):
    usd_per_gb: Price | None = None  # data processed by the gateway


class StoragePrice(_Strict):
    usd_per_gb_month: Price
    gb: Gigabytes  # provisioned volumes
    source: str | None = None
    notes: str | None = None


class TransferPrice(_Strict):
    usd_per_gb: Price
    source: str | None = None
    notes: str | None = None


class PriceSet(_Strict):
    """One provider's prices in force from `as_of` (a UTC day) until the next set's `as_of`."""
    as_of: date
    source: str = Field(min_length=1)  # where the prices come from (default source of every component)
    notes: str | None = None
    node_pools: list[NodePoolPrice] = Field(min_length=1)
    control_plane: HourlyPrice | None = None
    load_balancer: HourlyPrice | None = None
    nat_gateway: NatGatewayPrice | None = None
    storage: StoragePrice | None = None
    egress: TransferPrice | None = None

    @field_validator("as_of", mode="before")
    @classmethod
    def _iso_day(cls, value: Any) -> date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                if len(value) == 10:
                    return date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")

    def hourly_usd(self) -> Decimal:
        return sum((Decimal(str(r.price_usd)) * Decimal(str(r.quantity)) for r in self.rows("-") if r.unit == HOURLY),
                   Decimal(0))

    def rows(self, provider: str) -> list[CostRow]:
        def src(part, *prefix: str | None) -> str:
            return "; ".join(p for p in (*prefix, part.notes, part.source, self.notes, self.source) if p)

        rows = [CostRow(provider, self.as_of, p.component, HOURLY, p.usd_per_hour, p.count,
                        src(p, f"{p.count} x {p.instance_type}" + (" (GPU)" if p.gpu else "")))
                for p in self.node_pools]
        for name in ("control_plane", "load_balancer"):
            part = getattr(self, name)
            if part is not None:
                rows.append(CostRow(provider, self.as_of, name, HOURLY, part.usd_per_hour, part.count, src(part)))
        if self.nat_gateway is not None:
            nat = self.nat_gateway
            rows.append(CostRow(provider, self.as_of, "nat_gateway", HOURLY, nat.usd_per_hour, nat.count, src(nat)))
            if nat.usd_per_gb is not None:
                rows.append(CostRow(provider, self.as_of, "nat_gateway_data", GB, nat.usd_per_gb, 1,
                                    src(nat, "per GB processed")))
        if self.storage is not None:
            st = self.storage
            rows.append(CostRow(provider, self.as_of, "storage", GB_MONTH, st.usd_per_gb_month, st.gb,
                                src(st, f"{st.gb:g} GB provisioned")))
        if self.egress is not None:
            rows.append(CostRow(provider, self.as_of, "egress", GB, self.egress.usd_per_gb, 1,
                                src(self.egress, "per GB to the internet")))
        return rows


class CostFile(RootModel[dict[str, Annotated[list[PriceSet], Field(min_length=1)]]]):
    pass


@dataclass(frozen=True)
class CostRow:
    """One row of ``cost_inputs``. For per-GB prices (unit usd_per_gb) the quantity is 1: the price
    of one GB; how many GB a run moves is not known in advance."""
    provider: str
    as_of: date
    component: str
    unit: str
    price_usd: float
    quantity: float
    source: str

    def params(self) -> dict:
        return {"provider": self.provider, "as_of": self.as_of, "component": self.component, "unit": self.unit,
                "price_usd": Decimal(str(self.price_usd)), "quantity": Decimal(str(self.quantity)),
                "source": self.source}


@dataclass(frozen=True)
class CostInputs:
    path: Path
    providers: dict[str, list[PriceSet]]

    def rows(self) -> list[CostRow]:
        return [r for provider, sets in sorted(self.providers.items()) for s in sets for r in s.rows(provider)]


@dataclass(frozen=True)
class LoadResult:
    price_sets: int
    rows: int
    inserted: int
    updated: int
    deleted: int

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated

    def describe(self, path: Path) -> str:
        return (f"loaded {self.price_sets} price set(s), {self.rows} cost input(s) from {display_path(path)}: "
                f"{self.inserted} new, {self.updated} changed, {self.deleted} removed, {self.unchanged} unchanged")


def default_path() -> Path:
    return config_dir() / "costs.yaml"


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT.resolve()))
    except ValueError:
        return str(path)


# --- reading and validating -------------------------------------------------------------------

class _YamlLoader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps (pydantic checks `as_of`, so a bad date is a clear
    error rather than a crash) and with duplicate keys refused (YAML would keep the last one)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _where(raw: Any, loc: tuple) -> str:
    """('aws-eks', 0, 'node_pools', 1, 'usd_per_hour') -> 'aws-eks[2026-01-30].node_pools[1].usd_per_hour'."""
    if not loc:
        return "top level"
    out = str(loc[0])
    rest = list(loc[1:])
    if rest and isinstance(rest[0], int):
        idx = rest.pop(0)
        entry = None
        try:
            entry = raw[loc[0]][idx]
        except (KeyError, IndexError, TypeError):
            pass
        as_of = entry.get("as_of") if isinstance(entry, dict) else None
        out += f"[{as_of}]" if isinstance(as_of, str | date) and str(as_of) else f"[#{idx}]"
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model that holds the field at `loc` (to list the fields it does know)."""
    model: type[BaseModel] | None = PriceSet
    for part in loc[2:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _find_model(field.annotation) if field else None
    return model


def _find_model(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _find_model(arg)
            if found:
                return found
    return None


def _num(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _message(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing" or (err.get("input") is None and kind.endswith("_type")):
        return "required"
    if kind == "extra_forbidden":
        model = _model_at(tuple(err["loc"])) if len(err["loc"]) > 2 else None
        known = f" (known: {', '.join(model.model_fields)})" if model else ""
        return f"unknown field{known}"
    if kind == "greater_than_equal":
        return f"must be >= {_num(ctx.get('ge'))}"
    if kind == "less_than_equal":
        return f"must be <= {_num(ctx.get('le'))}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"must be a number, not {err.get('input')!r}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, not {err.get('input')!r}"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind == "string_type":
        return "must be a string"
    if kind == "string_pattern_mismatch":
        return f"{err.get('input')!r} must match {ctx.get('pattern')}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "list_type":
        return "must be a list of price sets" if len(err["loc"]) == 1 else "must be a list"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping"
    if kind == "value_error":
        return str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
    return err["msg"]


def parse_costs(text: str, path: Path, targets: TargetsConfig) -> CostInputs:
    """Validate a cost file's text; every problem is a RagbenchError of one line naming the field."""
    name = display_path(path)
    try:
        raw = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise RagbenchError(f"{name} is not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict) or not raw:
        raise RagbenchError(f"{name}: top level: must be a mapping of provider -> list of price sets")
    try:
        parsed = CostFile.model_validate(raw).root
    except ValidationError as exc:
        errors = exc.errors()
        # an unknown field is usually a misspelt known one: name it before the "required" it causes
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise RagbenchError(f"{name}: {_where(raw, tuple(err['loc']))}: {_message(err)}") from None

    known = sorted({t.provider for t in targets.targets})
    for provider, sets in parsed.items():
        if provider not in known:
            raise RagbenchError(f"{name}: {provider}: unknown provider (the providers of config/targets.yaml: "
                                f"{', '.join(known)})")
        seen_dates: set[date] = set()
        for s in sets:
            where = f"{provider}[{s.as_of}]"
            if s.as_of in seen_dates:
                raise RagbenchError(f"{name}: {where}.as_of: two price sets of {provider} have this date")
            seen_dates.add(s.as_of)
            components: set[str] = set()
            for i, pool in enumerate(s.node_pools):
                if pool.component in components or pool.component in PriceSet.model_fields:
                    raise RagbenchError(f"{name}: {where}.node_pools[{i}].component: {pool.component!r} is "
                                        "priced twice in this set")
                components.add(pool.component)
    _check_node_pools(name, parsed, targets)
    return CostInputs(path=path, providers=parsed)


def _check_node_pools(name: str, parsed: dict[str, list[PriceSet]], targets: TargetsConfig) -> None:
    """The set that prices runs starting today must price the node pools the targets declare
    (config/targets.yaml: node_pools[].pricing_key, instance_type, count), or runs would be charged
    for a cluster other than the one they ran on. A changed topology needs a new dated price set."""
    today = datetime.now(UTC).date()
    for t in targets.targets:
        current = [s for s in parsed.get(t.provider, []) if s.as_of <= today]
        if not t.node_pools or not current:
            continue
        newest = max(current, key=lambda s: s.as_of)
        priced = {p.component: p for p in newest.node_pools}
        where = f"{name}: {t.provider}[{newest.as_of}].node_pools"
        for pool in t.node_pools:
            p = priced.get(pool.pricing_key)
            if p is None:
                raise RagbenchError(f"{where}: no {pool.pricing_key!r}, the pricing_key of node pool "
                                    f"{pool.name!r} of target {t.name!r} in config/targets.yaml")
            if (p.count, p.instance_type) != (pool.count, pool.instance_type):
                raise RagbenchError(f"{where}: {p.component} is {p.count} x {p.instance_type} here but "
                                    f"{pool.count} x {pool.instance_type} for target {t.name!r} in "
                                    "config/targets.yaml; price the new topology in a new dated set")
        unused = sorted(set(priced) - {pool.pricing_key for pool in t.node_pools})
        if unused:
            raise RagbenchError(f"{where}: {', '.join(unused)} is not a node pool of target {t.name!r} "
                                "in config/targets.yaml (no pricing_key names it)")


def load_costs(path: Path | None = None, targets: TargetsConfig | None = None) -> CostInputs:
    path = path or default_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise RagbenchError(f"cannot read cost file {display_path(path)}: {exc.strerror}") from None
    return parse_costs(text, path, targets or load_targets())


# --- the database -----------------------------------------------------------------------------

_UPSERT = sa.text(
    "INSERT INTO cost_inputs (provider, as_of, component, unit, price_usd, quantity, source) "
    "VALUES (:provider, :as_of, :component, :unit, :price_usd, :quantity, :source) "
    "ON CONFLICT (provider, as_of, component) DO UPDATE SET unit = EXCLUDED.unit, "
    " price_usd = EXCLUDED.price_usd, quantity = EXCLUDED.quantity, source = EXCLUDED.source "
    "WHERE (cost_inputs.unit, cost_inputs.price_usd, cost_inputs.quantity, cost_inputs.source) "
    " IS DISTINCT FROM (EXCLUDED.unit, EXCLUDED.price_usd, EXCLUDED.quantity, EXCLUDED.source) "
    "RETURNING (xmax = 0) AS inserted")


def store(engine: Engine, inputs: CostInputs) -> LoadResult:
    """Write the inputs into cost_inputs in one transaction; returns what changed."""
    rows = inputs.rows()
    inserted = updated = deleted = 0
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        for row in rows:
            result = conn.execute(_UPSERT, row.params()).scalar()
            if result is True:
                inserted += 1
            elif result is False:
                updated += 1
        wanted = {(r.provider, r.as_of, r.component) for r in rows}
        existing = conn.execute(sa.text(
            "SELECT provider, as_of, component FROM cost_inputs WHERE provider = ANY(:p)"),
            {"p": sorted(inputs.providers)}).all()
        for key in sorted(tuple(k) for k in existing if tuple(k) not in wanted):
            conn.execute(sa.text("DELETE FROM cost_inputs WHERE provider = :p AND as_of = :a AND component = :c"),
                         {"p": key[0], "a": key[1], "c": key[2]})
            deleted += 1
    sets = sum(len(v) for v in inputs.providers.values())
    return LoadResult(price_sets=sets, rows=len(rows), inserted=inserted, updated=updated, deleted=deleted)


def load_into(engine: Engine, path: Path | None = None, targets: TargetsConfig | None = None) -> LoadResult:
    """Validate the cost file and load it (the tables must exist: run db.migrate first)."""
    return store(engine, load_costs(path, targets))


def cluster_prices(engine: Engine) -> list[dict]:
    """v_cost_cluster: the cluster $/hour of every provider and price set, newest first."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM v_cost_cluster ORDER BY provider, as_of DESC")).mappings()]


def usage_prices(engine: Engine) -> list[dict]:
    """v_cost_usage_prices: the per-GB prices, which are not part of the cluster's $/hour."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM v_cost_usage_prices ORDER BY provider, as_of DESC, component")).mappings()]


def format_prices(clusters: list[dict], usage: list[dict]) -> str:
    if not clusters:
        return "(no cost inputs loaded: run `ragbench costs load`)"
    lines = ["cluster $/hour (hourly components x count; used to price runs that start on or after as_of):"]
    head = ("provider", "as_of", "until", "$/hour", "components")
    body = [(c["provider"], str(c["as_of"]), str(c["superseded_on"] or "-"), f"{c['usd_per_hour']:.4f}",
             ", ".join(c["hourly_components"] or [])) for c in clusters]
    lines += _table(head, body)
    if usage:
        lines += ["", "per-GB prices (not in $/hour):"]
        head = ("provider", "as_of", "component", "unit", "price $", "quantity", "$/month")
        body = [(u["provider"], str(u["as_of"]), u["component"], u["unit"], f"{u['price_usd']:g}",
                 f"{u['quantity']:g}", "-" if u["usd_per_month"] is None else f"{u['usd_per_month']:.2f}")
                for u in usage]
        lines += _table(head, body)
    return "\n".join(lines)


def _table(head: tuple, body: list[tuple]) -> list[str]:
    widths = [max(len(h), *(len(str(r[i])) for r in body)) for i, h in enumerate(head)]
    out = [" | ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), "-+-".join("-" * w for w in widths)]
    out += [" | ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in body]
    return out
