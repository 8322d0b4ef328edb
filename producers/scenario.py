"""Drift scenarios as data: a YAML file in, transactions, labels and a manifest out.

A scenario names a simulator configuration and its changes; nothing in it
is code, so a new one is a new file (``fraudstream scenarios describe``
shows the built-in ones, in ``producers/scenarios/``). The manifest is the
ground truth a detector is judged against: for each change point its event
time, the index of the first transaction at or after it, what changed,
which features should move and what the model should feel.

Examples
--------
>>> spec = load_scenario("sudden_covariate_shift")
>>> spec.changes[0].kind, spec.changes[0].at_day
('amount_shift', 14.0)
>>> sorted(builtin_scenarios())[:3]
['baseline', 'compromise', 'concept_drift']
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from producers.compromise import CompromiseConfig, generate_compromise
from producers.generator import Change, LabelConfig, Simulation, SimulatorConfig, generate
from producers.patterns import PATTERNS
from producers.population import PopulationConfig

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario that cannot be loaded: names the file, the field and the reason."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PopulationSpec(_Spec):
    customers: int = Field(2000, ge=1, le=5_000_000)
    terminals: int = Field(1000, ge=1, le=500_000)
    radius_km: float = Field(30.0, gt=0)


class LabelSpec(_Spec):
    fraud_median_days: float = Field(2.0, gt=0)
    fraud_sigma: float = Field(0.6, ge=0)
    tail_share: float = Field(0.1, ge=0, le=1)
    tail_median_days: float = Field(14.0, gt=0)
    min_delay_hours: float = Field(1.0, ge=0)
    maturity_days: float = Field(7.0, ge=0)


class ChangeSpec(_Spec):
    kind: Literal["amount_shift", "volume_peak", "fraud_rate", "new_pattern", "label_delay"]
    at_day: float = Field(ge=0)
    factor: float = Field(1.0, gt=0)
    mode: Literal["sudden", "gradual", "incremental"] = "sudden"
    over_days: float = Field(0.0, ge=0)
    region: Literal["all", "north", "south"] = "all"
    duration_days: float = Field(0.0, ge=0)
    period_days: float = Field(0.0, ge=0)
    pattern: Literal[PATTERNS] | Literal[""] = ""  # type: ignore[valid-type]
    per_day: float = Field(0.0, ge=0)
    what: str = Field(min_length=1)
    features: tuple[str, ...] = ()
    model_effect: str = ""


class CompromiseSpec(_Spec):
    """The compromise family's parameters (:mod:`producers.compromise`)."""

    customers: int = Field(5000, ge=1, le=5_000_000)
    terminals: int = Field(10_000, ge=1, le=5_000_000)
    radius: float = Field(5.0, gt=0)
    amount_threshold: float = Field(220.0, gt=0)
    terminals_per_day: float = Field(2.0, ge=0)
    terminal_days: float = Field(28.0, ge=0)
    cards_per_day: float = Field(3.0, ge=0)
    card_days: float = Field(14.0, ge=0)
    card_share: float = Field(1 / 3, ge=0, le=1)
    card_factor: float = Field(5.0, gt=0)
    label_delay_days: float = Field(7.0, ge=0)


class ScenarioSpec(_Spec):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    #: Which generator: the behavioural simulator (``producers.generator``) or the
    #: compromise family (``producers.compromise``; it takes ``compromise`` and no changes).
    family: Literal["behavioural", "compromise"] = "behavioural"
    compromise: CompromiseSpec = CompromiseSpec()
    description: str = Field(min_length=1)
    days: float = Field(28.0, gt=0, le=3650)
    seed: int = 0
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    population: PopulationSpec = PopulationSpec()
    patterns: dict[Literal[PATTERNS], float] | None = None  # type: ignore[valid-type]
    labels: LabelSpec = LabelSpec()
    changes: tuple[ChangeSpec, ...] = ()

    @model_validator(mode="after")
    def _family_fits(self) -> ScenarioSpec:
        if self.family == "compromise" and self.changes:
            raise ValueError("changes: the compromise family takes no changes")
        return self

    def config(
        self, seed: int | None = None, days: float | None = None, customers: int | None = None
    ) -> SimulatorConfig:
        """The simulator configuration, optionally with another seed, length or size
        (fraud incidents per day scale with the number of customers).

        Parameters
        ----------
        seed
            The random seed (None: the scenario's).
        days
            The simulated length in days (None: the scenario's).
        customers
            The number of customers (None: the scenario's population); terminals are
            then half as many (at least 50).
        """
        population = PopulationConfig(
            customers=customers or self.population.customers,
            terminals=self.population.terminals if customers is None else max(50, customers // 2),
            radius_km=self.population.radius_km,
        )
        base = SimulatorConfig()
        # fraud incidents scale with the population, so the fraud rate stays put
        scale = population.customers / self.population.customers
        rates = dict(self.patterns) if self.patterns is not None else base.patterns
        return SimulatorConfig(
            population=population,
            days=days or self.days,
            start_time=self.start.timestamp(),
            patterns={name: rate * scale for name, rate in rates.items()},
            labels=LabelConfig(**self.labels.model_dump()),
            changes=tuple(
                Change(**{**c.model_dump(), "per_day": c.per_day * scale}) for c in self.changes
            ),
            seed=self.seed if seed is None else seed,
        )


def builtin_scenarios() -> dict[str, Path]:
    """Built-in scenario name -> file."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.yaml"))}


def load_scenario(name_or_path: str | Path) -> ScenarioSpec:
    """A built-in scenario by name, or a scenario file."""
    path = builtin_scenarios().get(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        known = ", ".join(builtin_scenarios())
        raise ScenarioError(f"{name_or_path}: not a built-in scenario ({known}) nor a file")
    try:
        raw: Any = yaml.safe_load(path.read_text())
        return ScenarioSpec.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<file>'}: {e['msg']}" for e in exc.errors()
        )
        raise ScenarioError(f"{path}: {reasons}") from None


def run_scenario(
    spec: ScenarioSpec,
    seed: int | None = None,
    days: float | None = None,
    customers: int | None = None,
) -> tuple[Simulation, dict[str, Any]]:
    """Simulate ``spec``; the data and its manifest.

    Parameters
    ----------
    spec
        The scenario.
    seed, days, customers
        Overrides of the scenario's seed, length and size, as for
        :meth:`ScenarioSpec.config` (and :func:`compromise_config`).
    """
    config = spec.config(seed, days, customers)
    if spec.family == "compromise":
        simulation = generate_compromise(compromise_config(spec, config, customers))
    else:
        simulation = generate(config)
    return simulation, manifest(spec, config, simulation)


def compromise_config(
    spec: ScenarioSpec, config: SimulatorConfig, customers: int | None = None
) -> CompromiseConfig:
    """The compromise family's configuration of ``spec`` (seed and days from ``config``;
    terminals and daily incidents scale with ``customers``).

    Parameters
    ----------
    spec
        The scenario; its ``compromise`` parameters are used.
    config
        The simulator configuration giving the seed, the days and the start time.
    customers
        The number of customers (None: the scenario's); terminals (at least 10) and the
        incidents per day scale with it.
    """
    params = spec.compromise.model_dump()
    if customers is not None:  # terminals and incidents scale too: the fraud rate stays put
        scale = customers / params["customers"]
        params["terminals"] = max(10, round(params["terminals"] * scale))
        params["terminals_per_day"] *= scale
        params["cards_per_day"] *= scale
        params["customers"] = customers
    return CompromiseConfig(
        **params, days=config.days, start_time=config.start_time, seed=config.seed
    )


def manifest(spec: ScenarioSpec, config: SimulatorConfig, simulation: Simulation) -> dict[str, Any]:
    """The ground truth of a simulated scenario.

    Parameters
    ----------
    spec
        The scenario (its name, description and change points).
    config
        The configuration it was simulated with (seed, start time, days).
    simulation
        What it produced (transactions in time order, labels).
    """
    times = simulation.transactions["event_time"]
    points = []
    for change in spec.changes:
        at = config.start_time + change.at_day * 86400.0
        first = int(times.search_sorted(at, side="left"))
        points.append(
            {
                "kind": change.kind,
                "at": _iso(at),
                "event_time": at,
                "index": first,
                "what": change.what,
                "features": list(change.features),
                "model_effect": change.model_effect,
                "params": change.model_dump(exclude={"what", "features", "model_effect"}),
            }
        )
    txns = simulation.transactions
    return {
        "scenario": spec.name,
        "description": spec.description,
        "seed": config.seed,
        "start": _iso(config.start_time),
        "days": config.days,
        "transactions": txns.height,
        "labels": simulation.labels.height,
        "fraud_rate": float(txns["is_fraud"].cast(pl.Float64).mean() or 0.0),  # type: ignore[arg-type]
        "frauds_by_pattern": dict(
            txns.filter(pl.col("is_fraud")).group_by("pattern").len().sort("pattern").iter_rows()
        ),
        "change_points": points,
    }


def moved(spec: ScenarioSpec, days: float, change_day: float) -> ScenarioSpec:
    """``spec`` lasting ``days``, its changes shifted so that the first is at ``change_day``.

    Parameters
    ----------
    spec
        The scenario.
    days
        The new length, in days.
    change_day
        The day (from the start) the earliest change moves to; the others keep their
        distance from it.

    Examples
    --------
    >>> spec = moved(load_scenario("prior_shift"), 56, 42)
    >>> spec.days, [c.at_day for c in spec.changes]
    (56.0, [42.0])
    """
    shift = change_day - min((c.at_day for c in spec.changes), default=change_day)
    changes = tuple(c.model_copy(update={"at_day": c.at_day + shift}) for c in spec.changes)
    return spec.model_copy(update={"days": float(days), "changes": changes})


def describe(spec: ScenarioSpec) -> str:
    """A few lines for ``fraudstream scenarios describe``."""
    people = spec.compromise if spec.family == "compromise" else spec.population
    lines = [
        f"{spec.name}: {spec.description}",
        f"  {spec.days:g} days from {spec.start:%Y-%m-%d}, seed {spec.seed}, "
        f"{people.customers} customers, {people.terminals} terminals"
        + (" (the compromise family)" if spec.family == "compromise" else ""),
    ]
    if not spec.changes:
        lines.append("  no change points")
    for c in spec.changes:
        lines.append(f"  day {c.at_day:g}: {c.kind} ({c.mode}) - {c.what}")
        if c.features:
            lines.append(f"    features that should move: {', '.join(c.features)}")
        if c.model_effect:
            lines.append(f"    model: {c.model_effect}")
    return "\n".join(lines)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")
