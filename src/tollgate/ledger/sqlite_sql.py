"""The statements of the SQLite ledger's reads: reports over the raw ledger or the rollup, and exports. Pure.

A report is ONE aggregating statement (``summary_sql`` over the ledger, ``rollup_sql`` over ``usage_rollup``),
ordered by day and then each group value in code-point order (BINARY collation) with NULLs last, as every store
orders them. SQLite has no time zones, so ``summary_sql`` computes the local day of a row from the offsets the zone
had over the period (``reports.offset_pieces``): ``(started_at + offset) / 86400`` days since the epoch. The rollup's
``day`` is that number already. ``ledger/sqlite_ledger.py`` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence

from tollgate.ledger import rollup, schema
from tollgate.ledger.reports import ReportQuery, day_number, offset_pieces

SECONDS_PER_DAY = 86_400

_AGGREGATES = (
    "count(*), sum(outcome = 'rejected'), sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens),"
    " sum(output_tokens), sum(reasoning_tokens), sum(cost_micros)"
)


def summary_sql(query: ReportQuery, *, scan: bool = False) -> tuple[str, list[object]]:
    """The one aggregating statement over the ledger for ``query``: ``day, *by, requests, rejections, tokens…,
    cost_micros`` (day NULL unless daily), ordered by day and then each group value (BINARY collation: code-point
    order) with NULLs last. ``scan`` reads the table straight through rather than through an index."""
    params: list[object] = []
    select = [f"{_local_day(query, params)} AS day" if query.daily else "NULL", *query.by]
    params += [query.period.start, query.period.end]
    where = ["started_at >= ?", "started_at < ?", *_filters(query, params)]
    source = f"{schema.TABLE} NOT INDEXED" if scan else schema.TABLE
    sql = f"SELECT {', '.join([*select, _AGGREGATES])} FROM {source} WHERE {' AND '.join(where)}"
    return sql + schema.report_grouping(schema.SQLITE, daily=query.daily, by=query.by), params


def rollup_sql(query: ReportQuery) -> tuple[str, list[object]]:
    """The statement over ``usage_rollup`` for a query it answers, with the same columns and order as
    ``summary_sql``; at full grain the rollup rows themselves in index order, for ``rollup.fold``."""
    if rollup.full_grain(query):
        return _rollup_in_order(query, schema.ROLLUP_MEASURES)
    params: list[object] = []
    where = _rollup_where(query, params)
    select = ["day" if query.daily else "NULL", *query.by, *(f"sum({name})" for name in schema.ROLLUP_MEASURES)]
    sql = f"SELECT {', '.join(select)} FROM {schema.ROLLUP_TABLE} WHERE {' AND '.join(where)}"
    return sql + schema.report_grouping(schema.SQLITE, daily=query.daily, by=query.by), params


def rollup_export_sql(query: ReportQuery) -> tuple[str, list[object]]:
    """The rollup rows of a full-grain query in index order with the columns of ``reports.ExportRow`` (the
    day is already a day number)."""
    return _rollup_in_order(query, rollup.EXPORT_COLUMNS)


def _rollup_in_order(query: ReportQuery, measures: Sequence[str]) -> tuple[str, list[object]]:
    params: list[object] = []
    where = _rollup_where(query, params)
    columns = ", ".join(["day", *query.by, *measures])
    order = ", ".join(schema.rollup_key(schema.SQLITE))
    return f"SELECT {columns} FROM {schema.ROLLUP_TABLE} WHERE {' AND '.join(where)} ORDER BY {order}", params


def _rollup_where(query: ReportQuery, params: list[object]) -> list[str]:
    params += [day_number(query.period.first_day), day_number(query.period.last_day)]
    return ["day >= ?", "day <= ?", *_filters(query, params)]


def _filters(query: ReportQuery, params: list[object]) -> list[str]:
    where = []
    for column, values in query.filters:
        where.append(f"{column} IN ({', '.join('?' for _ in values)})" if values else "0")
        params += list(values)
    if query.dispatched_only:
        where.append("provider IS NOT NULL")
    return where


def _local_day(query: ReportQuery, params: list[object]) -> str:
    """Days since the epoch in local time; the offset is chosen per row by which piece ``started_at`` falls in."""
    pieces = offset_pieces(query.period)
    if len(pieces) == 1:
        params.append(pieces[0].offset_s)
        return f"CAST((started_at + ?) / {SECONDS_PER_DAY} AS INTEGER)"
    cases = []
    for piece in pieces[:-1]:
        cases.append("WHEN started_at < ? THEN ?")
        params += [piece.until, piece.offset_s]
    params.append(pieces[-1].offset_s)
    return f"CAST((started_at + CASE {' '.join(cases)} ELSE ? END) / {SECONDS_PER_DAY} AS INTEGER)"
