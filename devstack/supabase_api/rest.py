"""The Data API (PostgREST) subset the console uses, translated to SQL.

Reads: `select` of plain columns, filters `eq neq gt gte lt lte like ilike is in` (with `not.`),
`or=(...)`, `order=col.asc|desc[.nullsfirst|nullslast]`, `limit`, `offset`, `Prefer: count=exact`.
Writes: PATCH with the same filters (column grants decide what may change). RPC: POST
/rpc/<function> with named arguments. Anything else is refused with PostgREST's error shape,
so the console cannot come to depend on a feature this stand-in lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
              "like": "like", "ilike": "ilike"}  # fmt: skip
RESERVED = {"select", "order", "limit", "offset", "or", "and", "columns", "on_conflict"}


class QueryError(Exception):
    """A request PostgREST would refuse: (status, PostgREST error body)."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "message": message, "details": details, "hint": None}


def identifier(name: str) -> sql.Identifier:
    if not _IDENT.match(name):
        raise QueryError(400, "PGRST100", f'"failed to parse" {name!r}', "unsupported identifier")
    return sql.Identifier(name)


def _value(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    return raw


def _split_list(raw: str) -> list[str]:
    """Split `a,b,"c,d"` on commas outside double quotes."""
    items, current, quoted, depth = [], "", False, 0
    for char in raw:
        if char == '"':
            quoted = not quoted
        elif char == "(" and not quoted:
            depth += 1
        elif char == ")" and not quoted:
            depth -= 1
        if char == "," and not quoted and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return items


def condition(column: str, expression: str) -> tuple[sql.Composable, list[Any]]:
    """`col=op.value` (or `not.op.value`) as SQL and its parameters."""
    negate = expression.startswith("not.")
    if negate:
        expression = expression[4:]
    operator, _, raw = expression.partition(".")
    target = identifier(column)
    clause: sql.Composable
    params: list[Any] = []
    if operator in _OPERATORS:
        value = _value(raw)
        if operator in ("like", "ilike"):
            value = value.replace("*", "%")
        clause = sql.SQL("{} {} %s").format(target, sql.SQL(_OPERATORS[operator]))
        params = [value]
    elif operator == "is":
        if raw not in ("null", "true", "false", "unknown"):
            raise QueryError(400, "PGRST100", f'"failed to parse filter (is.{raw})"')
        clause = sql.SQL("{} is {}").format(target, sql.SQL(raw))
    elif operator == "in":
        if not (raw.startswith("(") and raw.endswith(")")):
            raise QueryError(400, "PGRST100", f'"failed to parse filter (in.{raw})"')
        values = [_value(v) for v in _split_list(raw[1:-1]) if v != ""]
        clause = sql.SQL("{}::text = any(%s)").format(target)
        params = [values]
    else:
        raise QueryError(400, "PGRST100", f'"failed to parse filter ({operator}.{raw})"')
    if negate:
        clause = sql.SQL("not ({})").format(clause)
    return clause, params


def or_condition(raw: str) -> tuple[sql.Composable, list[Any]]:
    """`or=(a.eq.1,b.ilike.*x*)`."""
    if not (raw.startswith("(") and raw.endswith(")")):
        raise QueryError(400, "PGRST100", f'"failed to parse logic tree ({raw})"')
    parts, params = [], []
    for item in _split_list(raw[1:-1]):
        column, _, expression = item.partition(".")
        clause, values = condition(column, expression)
        parts.append(clause)
        params += values
    return sql.SQL("({})").format(sql.SQL(" or ").join(parts)), params


@dataclass
class Query:
    table: str
    columns: sql.Composable
    where: sql.Composable
    params: list[Any]
    order: sql.Composable
    limit: int | None
    offset: int


def parse(table: str, query: list[tuple[str, str]]) -> Query:
    """The read or write a PostgREST URL asks for (`query` in order, repeated keys kept)."""
    identifier(table)
    select, order, limit, offset = "*", "", None, 0
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    for key, value in query:
        if key == "select":
            select = value
        elif key == "order":
            order = value
        elif key == "limit":
            limit = _int(key, value)
        elif key == "offset":
            offset = _int(key, value)
        elif key == "or":
            clause, values = or_condition(value)
            clauses.append(clause)
            params += values
        elif key in RESERVED:
            raise QueryError(400, "PGRST100", f"{key!r} is not supported by the local stand-in")
        else:
            clause, values = condition(key, value)
            clauses.append(clause)
            params += values
    return Query(
        table,
        _columns(select),
        sql.SQL(" and ").join(clauses) if clauses else sql.SQL("true"),
        params,
        _order(order),
        limit,
        offset,
    )


def _int(key: str, value: str) -> int:
    if not value.isdigit():
        raise QueryError(400, "PGRST100", f'"failed to parse {key}: {value}"')
    return int(value)


def _columns(select: str) -> sql.Composable:
    names = [c.strip() for c in select.split(",") if c.strip()]
    if names == ["*"] or not names:
        return sql.SQL("*")
    return sql.SQL(", ").join(identifier(name) for name in names)


def _order(order: str) -> sql.Composable:
    if not order:
        return sql.SQL("")
    terms = []
    for term in order.split(","):
        column, *modifiers = term.split(".")
        words = []
        for modifier in modifiers:
            if modifier not in ("asc", "desc", "nullsfirst", "nullslast"):
                raise QueryError(400, "PGRST100", f'"failed to parse order ({term})"')
            words.append(modifier.replace("nulls", "nulls "))
        terms.append(sql.SQL("{} {}").format(identifier(column), sql.SQL(" ".join(words))))
    return sql.SQL(" order by ") + sql.SQL(", ").join(terms)


def select_statement(q: Query) -> sql.Composed:
    limit = (
        sql.SQL(" limit {}").format(sql.Literal(q.limit)) if q.limit is not None else sql.SQL("")
    )
    return sql.SQL(
        "select coalesce(json_agg(t), '[]'::json) from (select {} from public.{} where {}{}{}"
        " offset {}) t"
    ).format(q.columns, identifier(q.table), q.where, q.order, limit, sql.Literal(q.offset))


def count_statement(q: Query) -> sql.Composed:
    return sql.SQL("select count(*) from public.{} where {}").format(identifier(q.table), q.where)


def update_statement(q: Query, changes: dict[str, Any]) -> tuple[sql.Composed, list[Any]]:
    if not isinstance(changes, dict) or not changes:
        raise QueryError(400, "PGRST102", "Empty or invalid json")
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = %s").format(identifier(column)) for column in changes
    )
    statement = sql.SQL(
        "with changed as (update public.{} set {} where {} returning {})"
        " select coalesce(json_agg(changed), '[]'::json) from changed"
    ).format(identifier(q.table), assignments, q.where, q.columns)
    values = [parameter(v) for v in changes.values()]
    return statement, values + q.params


def parameter(value: Any) -> Any:
    # JSON objects and arrays go to jsonb columns; scalars let Postgres cast from text.
    if isinstance(value, dict | list):
        return Jsonb(value)
    if isinstance(value, bool) or value is None:
        return value
    return str(value)


# PostgREST's mapping of SQLSTATE to HTTP status (the part our schema can raise).
def status_for(sqlstate: str | None, role: str) -> int:
    state = sqlstate or ""
    if state == "42501":
        return 401 if role == "anon" else 403
    if state in ("42P01", "42883"):
        return 404
    if state.startswith("23"):
        return 409
    if state in ("P0001",) or state.startswith(("22", "42")):
        return 400
    if state.startswith(("08", "53", "57")):
        return 503
    return 500
