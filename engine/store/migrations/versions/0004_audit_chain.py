"""audit chain: hash-chained, append-only audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 04:40:00

Adds ``seq``/``hash`` to ``audit_events``, the chain head to ``instances`` and the
``audit_heads`` table (chains without an instance), chains the rows already there in id
order, then installs the triggers that refuse UPDATE/DELETE on ``audit_events`` and DELETE
on ``instances``. The hash is the engine's own (engine.audit.event_hash), so what this
migration computes is what ``nd73 audit verify`` checks.
"""
from alembic import op
import sqlalchemy as sa

from engine.audit import SYSTEM_CHAIN, create_triggers_sql, drop_triggers_sql, event_hash


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audit_seq', sa.Integer(), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('audit_head', sa.String(length=64), nullable=True))
    op.create_table('audit_heads',
                    sa.Column('chain', sa.String(length=64), nullable=False),
                    sa.Column('seq', sa.Integer(), nullable=False),
                    sa.Column('head', sa.String(length=64), nullable=False),
                    sa.PrimaryKeyConstraint('chain'))
    _chain_existing_rows(op.get_bind())
    for statement in create_triggers_sql(op.get_bind().dialect.name):
        op.execute(statement)


def _chain_existing_rows(connection) -> None:
    """One pass over the log in id order, in batches, keeping each chain's head."""
    events = sa.table('audit_events', sa.column('id', sa.Integer), sa.column('seq'),
                      sa.column('hash'), sa.column('instance_id', sa.String),
                      sa.column('definition_id', sa.Integer),
                      sa.column('at', sa.DateTime(timezone=True)),
                      sa.column('actor', sa.String), sa.column('action', sa.String),
                      sa.column('element_id', sa.String), sa.column('details', sa.JSON))
    instances = sa.table('instances', sa.column('id', sa.String),
                         sa.column('audit_seq', sa.Integer), sa.column('audit_head'))
    heads_table = sa.table('audit_heads', sa.column('chain'), sa.column('seq'),
                           sa.column('head'))
    known = {row.id for row in connection.execute(sa.select(instances.c.id))}
    heads: dict = {}
    last = 0
    while True:
        rows = connection.execute(sa.select(events).where(events.c.id > last)
                                  .order_by(events.c.id).limit(BATCH)).all()
        if not rows:
            break
        changes = []
        for row in rows:
            seq, head = heads.get(row.instance_id, (0, None))
            seq += 1
            head = event_hash(head, seq=seq, instance_id=row.instance_id,
                              definition_id=row.definition_id, at=row.at, actor=row.actor,
                              action=row.action, element_id=row.element_id,
                              details=row.details)
            heads[row.instance_id] = (seq, head)
            changes.append({"b_id": row.id, "b_seq": seq, "b_hash": head})
        connection.execute(events.update().where(events.c.id == sa.bindparam('b_id'))
                           .values(seq=sa.bindparam('b_seq'), hash=sa.bindparam('b_hash')),
                           changes)
        last = rows[-1].id
    on_instances = [{"b_id": k, "b_seq": s, "b_head": h} for k, (s, h) in heads.items()
                    if k in known]
    if on_instances:
        connection.execute(instances.update().where(instances.c.id == sa.bindparam('b_id'))
                           .values(audit_seq=sa.bindparam('b_seq'),
                                   audit_head=sa.bindparam('b_head')), on_instances)
    others = [{"chain": k or SYSTEM_CHAIN, "seq": s, "head": h} for k, (s, h) in heads.items()
              if k not in known]
    if others:
        connection.execute(heads_table.insert(), others)


def downgrade() -> None:
    for statement in drop_triggers_sql(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table('audit_heads')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('audit_head')
        batch_op.drop_column('audit_seq')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('hash')
        batch_op.drop_column('seq')
