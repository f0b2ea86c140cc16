"""Tables that start from another table's run: a pretraining run is a dependency, not a copy.

The digits profile's transfer analogs (KM Table II / Fig. 4, model patches Tables 2, 6) fine-tune a
backbone that one run of another table pretrained (:mod:`kmexp.reporting.digits_transfer_tables`).
A row names that run with a reference in its overrides::

    backbone.weights_path=${paths.log_dir}/runs/{run:digits_pretrain_gn/resnet20_gn}/checkpoints/last.ckpt

``{run:<table id>/<row key>}`` becomes the run identity of that row's cell for the required
table's first seed (:func:`resolve_references`), and ``Table.requires`` lists the tables referred
to, so ``python -m kmexp.reproduce`` plans and runs them first (:func:`with_requirements`; the
local launcher runs tables in order). ``${paths.log_dir}`` stays an interpolation: a run's
identity (:mod:`kmexp.reporting.runs`) hashes ``<paths.log_dir>`` in its place, so the identity
holds the pretraining run's identity (retraining the backbone differently makes new transfer
runs) but not the machine's directory layout. Cluster launchers queue jobs without ordering them:
run the required tables to completion first.
"""

from __future__ import annotations

import dataclasses
import re

from kmexp.errors import KmexpError

RUN_REFERENCE = re.compile(r"\{run:([A-Za-z0-9_]+)/([A-Za-z0-9_]+)\}")


def checkpoint_of(table_id: str, row: str) -> str:
    """The override that starts a backbone from the last checkpoint of ``table_id``'s ``row`` run."""
    return f"backbone.weights_path=${{paths.log_dir}}/runs/{{run:{table_id}/{row}}}/checkpoints/last.ckpt"


def with_requirements(ids: list[str], tables: dict) -> list[str]:
    """``ids`` with every table they require (recursively) placed before its first user."""
    ordered: list[str] = []

    def visit(table_id: str, chain: tuple[str, ...]) -> None:
        if table_id in chain:
            raise KmexpError(f"tables require each other in a cycle: {' -> '.join((*chain, table_id))}")
        if table_id not in tables:
            raise KmexpError(f"table {chain[-1]!r} requires unknown table {table_id!r}")
        for required in tables[table_id].requires:
            visit(required, (*chain, table_id))
        if table_id not in ordered:
            ordered.append(table_id)

    for table_id in ids:
        visit(table_id, ())
    return ordered


def resolve_references(table_id: str, table, cells: dict) -> object:
    """``table`` with every ``{run:T/R}`` of its rows' overrides replaced by that run's identity
    (``cells``: the already planned cells of the required tables)."""

    def run_id(match: re.Match) -> str:
        required, row = match.groups()
        if required not in table.requires:
            raise KmexpError(f"{table_id} refers to {required}/{row} but does not list {required!r} in Table.requires")
        found = [c.run_id for c in cells.get(required, ()) if c.row == row]
        if not found:
            raise KmexpError(f"{table_id} refers to {required}/{row}: no such planned run (rows of {required}: "
                             f"{sorted({c.row for c in cells.get(required, ())})})")
        return found[0]

    rows = tuple(dataclasses.replace(r, overrides=tuple(RUN_REFERENCE.sub(run_id, o) for o in r.overrides))
                 for r in table.rows)
    return dataclasses.replace(table, rows=rows)
