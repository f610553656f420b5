"""Document registers (sổ đăng ký văn bản): one per issuing agency, year and kind.

Nghị định 30/2020/NĐ-CP, Phụ lục I: a document's number is its place in the register of
its agency for the year (from 01 on 1 January); numbers below 10 are written with a leading
0. A number is taken by incrementing the register's row inside the transaction that issues
the document: the row lock makes concurrent issuers wait for each other (PostgreSQL; SQLite
serializes writers with BEGIN IMMEDIATE), and a transaction that fails gives its number
back with everything else, so the numbers are unique and without gaps.
"""
from __future__ import annotations

from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..store.models import DocumentRegister

_TABLE = DocumentRegister.__table__


def _statement(insert):
    # one statement: the register's row is created by its first document, else incremented
    # (the conflict locks the row on PostgreSQL, so a concurrent issuer waits for it)
    return (insert(_TABLE).values(agency_id=bindparam("agency_id"), year=bindparam("year"),
                                  kind=bindparam("kind"), last_number=1)
            .on_conflict_do_update(
                index_elements=[_TABLE.c.agency_id, _TABLE.c.year, _TABLE.c.kind],
                set_={"last_number": _TABLE.c.last_number + 1})
            .returning(_TABLE.c.last_number))


# built once per dialect: building it took a third of a number's time
_TAKE = {"sqlite": _statement(sqlite_insert), "postgresql": _statement(postgres_insert)}


def take_number(session: Session, agency_id: str, year: int, kind: str) -> int:
    """The next number of a register, taken in ``session``'s transaction (on its connection:
    a Core statement, which the session's own execution would only hand on)."""
    connection = session.connection()
    return connection.execute(_TAKE[connection.dialect.name],
                              {"agency_id": agency_id, "year": year,
                               "kind": kind}).scalar_one()


def reference(number: int, kind: str, agency_code: str) -> str:
    """Số/ký hiệu: ``05/QĐ-SXD``."""
    return f"{number:02d}/{kind}-{agency_code}" if agency_code else f"{number:02d}/{kind}"
