"""Profiles of ``python -m kmexp.reproduce``: which tables a profile runs, with which overrides,
where its logs and tables go, and what its tables and figures say about themselves.

- no profile: the papers' recipes on the papers' datasets (``results/``, ``logs/reproduce``).
- ``mini``: every table end to end on bundled data, one batch per run: a pipeline check whose
  accuracies are noise by design (``results/mini/``, ``logs/mini``; ``Table.mini`` overrides).
- ``digits``: the digits-analog tables (``Table.digits`` is not None), each trained to
  convergence on scikit-learn's handwritten digits (real data, bundled) with a budget chosen
  once per table on the validation split; 3 seeds; ``results/digits/``, ``logs/digits``.
  A table joins it by setting ``Table.digits`` to its profile overrides (usually only a budget:
  the analog table's own experiment presets hold the data and the recipe).
"""

from __future__ import annotations

from dataclasses import dataclass

from kmexp.errors import KmexpError
from kmexp.reporting.tables import TABLES, Table

# Mini: every table end to end on bundled data with tiny budgets. A pipeline check, never a
# reproduction: its tables go to results/mini/.
MINI_TRAINER = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.accelerator=cpu",
    "logger=csv",
    "callbacks.progress_bar=none",
)
# Digits: full epochs (budgets live in each table's ``digits`` overrides and presets), on the CPU
# the profile's time limit is stated for (30 minutes for `all` on a 2-core machine).
DIGITS_TRAINER = (
    "trainer.accelerator=cpu",
    "trainer.num_sanity_val_steps=0",
    "logger=csv",
    "callbacks.progress_bar=none",
)
DIGITS_SEEDS = (0, 1, 2)

DIGITS_DATA = ("scikit-learn's handwritten digits (real data, bundled; 1,797 8x8 images, fixed split "
               "1,197 train / 300 validation / 300 test)")


@dataclass(frozen=True)
class Profile:
    name: str
    logs: str  # default root of the run directories
    results: str  # default subfolder of results/ for the tables
    default_seeds: tuple[int, ...] | None  # None: the --seeds default (the papers' 5)


PROFILES = {
    "mini": Profile("mini", "logs/mini", "mini", None),
    "digits": Profile("digits", "logs/digits", "digits", DIGITS_SEEDS),
}


def in_profile(table: Table, profile: str | None) -> bool:
    """Whether ``all`` (or a preset folder) of ``profile`` selects the table."""
    if profile == "digits":
        return table.digits is not None
    return not table.exclude_from_all


def profile_overrides(table: Table, profile: str | None) -> list[str]:
    """The overrides a profile adds to every row of ``table`` (they win over the row's own)."""
    if profile == "mini":
        return [*MINI_TRAINER, *table.mini]
    if profile == "digits":
        if table.digits is None:
            digits_tables = ", ".join(t for t, tb in TABLES.items() if tb.digits is not None)
            raise KmexpError(f"table {table.title!r} has no digits profile; digits tables: {digits_tables}")
        return [*DIGITS_TRAINER, *table.digits]
    return []


def caption(table: Table, profile: str | None) -> str:
    """What a figure of ``table`` under ``profile`` must say in its own title about its data."""
    if profile == "mini":
        data = "glyphs" if any("fewshot_glyphs" in o for o in table.mini) else "digits"
        return f"mini profile, {data}, pipeline check"
    if profile == "digits":
        return f"digits profile ({table.data_short}, not the paper's dataset)" if table.data_short else \
            "digits profile (not the paper's dataset)"
    return ""


def provenance(table_id: str, table: Table, profile: str | None, seeds: list[int], summaries: list[dict]) -> str:
    """The header line of a profile's table: data, budget, seeds, hardware, time."""
    if profile == "mini":
        return (f"Pipeline check (`python -m kmexp.reproduce {table_id} --profile mini`): bundled data, "
                f"1 epoch of 1 batch, seeds {seeds}, CPU. Not a reproduction of the paper.")
    if profile != "digits":
        return ""
    # a run that feeds several cells (Fig. 5's default modulator is Table I's KM run) counts once
    finished = list({s.get("_path"): s for s in summaries if s.get("status") == "finished"}.values())
    hardware = sorted({s["hardware"] for s in finished if s.get("hardware")}) or ["no finished run"]
    epochs = sorted({int(s["epochs"]) for s in finished if s.get("epochs") is not None})
    train_s = sum(float(s.get("duration_s") or 0) for s in finished)
    budget = " ".join(table.digits or ()) or "the presets' own"
    return (f"Digits profile (`python -m kmexp.reproduce {table_id} --profile digits`). Data: {table.data or DIGITS_DATA}. "
            f"Budget: {budget} (epochs run: {', '.join(map(str, epochs)) or '—'}; chosen on the validation "
            f"split, see the note). Seeds: {seeds}. Hardware: {'; '.join(hardware)}. Training time of the "
            f"{len(finished)} finished runs: {train_s:.0f} s in total. Test accuracy of the last checkpoint "
            f"{'on the test split named above' if table.data else 'on the 300 test digits'}. The paper column is the paper's dataset, for orientation only.")
