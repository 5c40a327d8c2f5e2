"""A tiny, tolerant SOQL subset: enough for the console's permission checks.

Supported: ``SELECT f1, Rel.f2, ... FROM Object [WHERE f = 'x' [AND ...]]
[LIMIT n]``.  Keywords and field names are case-insensitive, as in real SOQL;
ID comparisons use the 15-character core.  Anything else is a
``MALFORMED_QUERY``; an unknown object is ``INVALID_TYPE`` and an unknown field
``INVALID_FIELD``, with messages shaped like the real ones (query echoed, a
caret, ``ERROR at Row:1:Column:N``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import ids

Record = dict[str, Any]
# Looks up an object by lower-case name and returns (canonical name, a fully
# populated sample record used as the field schema, the records), or None.
SourceFn = Callable[[str], "tuple[str, Record, list[Record]] | None"]


class SoqlError(Exception):
    """A query error carrying the REST `errorCode` and message."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@dataclass
class Token:
    kind: str  # "ident", "string", "number", "comma", "eq", "end"
    text: str
    pos: int  # 0-based offset in the query
    value: Any = None


@dataclass
class Condition:
    field: Token
    value: Any


@dataclass
class Query:
    text: str
    fields: list[Token]
    sobject: Token
    where: list[Condition] = field(default_factory=list)
    limit: int | None = None


_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<string>'(?:\\.|[^'\\])*')
      | (?P<number>\d+)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<comma>,)
      | (?P<eq>=)
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)


def _error_text(query: str, pos: int, detail: str) -> str:
    # Real messages echo the query, point a caret at the column and give a
    # 1-based "Row:1:Column:N" position before the explanation.
    return f"\n{query}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\n{detail}"


def _malformed(query: str, tok: Token) -> SoqlError:
    shown = "EOF" if tok.kind == "end" else tok.text
    return SoqlError(
        "MALFORMED_QUERY", _error_text(query, tok.pos, f"unexpected token: '{shown}'")
    )


def tokenize(query: str) -> list[Token]:
    """Split a query into tokens; raise MALFORMED_QUERY on stray characters."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(query, pos)
        if match is None:  # pragma: no cover - the regex matches any \S
            break
        kind = match.lastgroup or "other"
        text = match.group(kind)
        start = match.start(kind)
        tok = Token(kind, text, start)
        if kind == "other":
            raise _malformed(query, tok)
        if kind == "string":
            tok.value = re.sub(r"\\(.)", r"\1", text[1:-1])
        elif kind == "number":
            tok.value = int(text)
        tokens.append(tok)
        pos = match.end()
    tokens.append(Token("end", "", len(query)))
    return tokens


def _is_kw(tok: Token, word: str) -> bool:
    return tok.kind == "ident" and tok.text.upper() == word


def parse(query: str) -> Query:
    """Parse the supported subset or raise :class:`SoqlError`."""
    query = query.strip()
    toks = tokenize(query)
    i = 0

    def expect_kw(word: str) -> None:
        nonlocal i
        if not _is_kw(toks[i], word):
            raise _malformed(query, toks[i])
        i += 1

    expect_kw("SELECT")
    fields: list[Token] = []
    while True:
        tok = toks[i]
        if tok.kind != "ident" or _is_kw(tok, "FROM"):
            raise _malformed(query, tok)
        fields.append(tok)
        i += 1
        if toks[i].kind == "comma":
            i += 1
            continue
        break
    expect_kw("FROM")
    sobject = toks[i]
    if sobject.kind != "ident" or "." in sobject.text:
        raise _malformed(query, sobject)
    i += 1
    result = Query(query, fields, sobject)
    if _is_kw(toks[i], "WHERE"):
        i += 1
        while True:
            ftok = toks[i]
            if ftok.kind != "ident":
                raise _malformed(query, ftok)
            if toks[i + 1].kind != "eq":
                raise _malformed(query, toks[i + 1])
            vtok = toks[i + 2]
            if vtok.kind == "string":
                value: Any = vtok.value
            elif _is_kw(vtok, "TRUE") or _is_kw(vtok, "FALSE"):
                value = vtok.text.upper() == "TRUE"
            elif _is_kw(vtok, "NULL"):
                value = None
            else:
                raise _malformed(query, vtok)
            result.where.append(Condition(ftok, value))
            i += 3
            if _is_kw(toks[i], "AND"):
                i += 1
                continue
            break
    if _is_kw(toks[i], "LIMIT"):
        if toks[i + 1].kind != "number":
            raise _malformed(query, toks[i + 1])
        result.limit = toks[i + 1].value
        i += 2
    if toks[i].kind != "end":
        raise _malformed(query, toks[i])
    return result


def _lookup(record: Record | None, key: str) -> tuple[str, Any]:
    """Case-insensitive field lookup; KeyError if the field does not exist."""
    if record is None:
        raise KeyError(key)
    for name, value in record.items():
        if name != "attributes" and name.lower() == key.lower():
            return name, value
    raise KeyError(key)


def resolve(record: Record, path: str, schema: Record) -> tuple[list[str], Any]:
    """Resolve `Rel.Field` against a record; names come from `schema`.

    `schema` is a fully populated sample record of the object so that a null
    relationship on this record still validates its sub-fields.
    """
    names: list[str] = []
    value: Any = record
    sample: Any = schema
    parts = path.split(".")
    for n, part in enumerate(parts):
        name, sample = _lookup(sample, part)
        names.append(name)
        if n < len(parts) - 1 and not isinstance(sample, dict):
            raise KeyError(part)
        value = None if value is None else value.get(name)
    if isinstance(sample, dict):
        raise KeyError(path)  # a relationship, not a field, was selected
    return names, value


def _invalid_field(query: Query, tok: Token, sobject: str) -> SoqlError:
    detail = (
        f"No such column '{tok.text}' on entity '{sobject}'. If you are attempting "
        "to use a custom field, be sure to append the '__c' after the custom field "
        "name. Please reference your WSDL or the describe call for the appropriate "
        "names."
    )
    return SoqlError("INVALID_FIELD", _error_text(query.text, tok.pos, detail))


def _matches(actual: Any, expected: Any, field_name: str) -> bool:
    if expected is None or isinstance(expected, bool):
        return actual is expected if expected is None else actual == expected
    if actual is None:
        return False
    text = str(actual)
    if (
        field_name.endswith("Id")
        and ids.is_valid_id(expected)
        and ids.is_valid_id(text)
    ):
        return ids.same_id(text, expected)
    return text.lower() == str(expected).lower()


def _insert(out: Record, names: list[str], value: Any, record: Record) -> None:
    """Put `value` at `names` in `out`, copying relationship attributes."""
    node, src = out, record
    for name in names[:-1]:
        child_src = src.get(name) if src is not None else None
        if child_src is None:
            node[name] = None
            return
        if node.get(name) is None:
            node[name] = {"attributes": child_src["attributes"]}
        node, src = node[name], child_src
    node[names[-1]] = value


def execute(text: str, sources: SourceFn) -> tuple[str, list[Record]]:
    """Run `text` against `sources`; return (object name, projected records)."""
    query = parse(text)
    found = sources(query.sobject.text.lower())
    if found is None:
        detail = (
            f"sObject type '{query.sobject.text}' is not supported. If you are "
            "attempting to use a custom object, be sure to append the '__c' after "
            "the entity name. Please reference your WSDL or the describe call for "
            "the appropriate names."
        )
        raise SoqlError(
            "INVALID_TYPE", _error_text(query.text, query.sobject.pos, detail)
        )
    sobject, schema, records = found
    # Validate every field first so that an empty result still reports errors.
    for tok in query.fields + [c.field for c in query.where]:
        try:
            resolve(schema, tok.text, schema)
        except KeyError:
            raise _invalid_field(query, tok, sobject) from None
    rows: list[Record] = []
    for record in records:
        ok = True
        for cond in query.where:
            names, actual = resolve(record, cond.field.text, schema)
            if not _matches(actual, cond.value, names[-1]):
                ok = False
                break
        if not ok:
            continue
        out: Record = {"attributes": record["attributes"]}
        for tok in query.fields:
            names, value = resolve(record, tok.text, schema)
            _insert(out, names, value, record)
        rows.append(out)
        if query.limit is not None and len(rows) >= query.limit:
            break
    return sobject, rows
