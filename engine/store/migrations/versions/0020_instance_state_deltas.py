"""instance state stored incrementally: deltas after a snapshot

Revision ID: 0020
Revises: 0016
Create Date: 2026-12-03 13:30:00

A step stores what it changed in the instance's state (``instance_state_deltas``) rather
than the whole state; ``instances.state_data`` stays the snapshot the deltas apply to, so
every existing instance (no deltas) loads as before. The downgrade folds each instance's
deltas into its snapshot first, so nothing is lost.
"""
import json
import zlib

import sqlalchemy as sa
from alembic import op


revision = '0020'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'instance_state_deltas',
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id']),
        sa.PrimaryKeyConstraint('instance_id', 'seq'))


def _apply(dct, delta):
    """The delta format of engine.serialization.apply_delta, as it was at this revision."""
    nested = ('tasks', 'subprocesses')
    subprocesses = dct.setdefault('subprocesses', {})
    for key in delta.get('del', ()):
        if key[0] == 't':
            del dct['tasks'][key[2:]]
        else:
            sub_id, _, task_id = key[2:].partition(':')
            if task_id:
                del subprocesses[sub_id]['tasks'][task_id]
            else:
                del subprocesses[sub_id]
    for key, value in delta.get('set', {}).items():
        if key == 'w':
            target = dct
        elif key[0] == 't':
            dct['tasks'][key[2:]] = value
            continue
        else:
            sub_id, _, task_id = key[2:].partition(':')
            target = subprocesses.setdefault(sub_id, {'tasks': {}})
            if task_id:
                target['tasks'][task_id] = value
                continue
        for name in [k for k in target if k not in nested and k not in value]:
            del target[name]
        target.update(value)


def downgrade():
    bind = op.get_bind()
    deltas = sa.table('instance_state_deltas', sa.column('instance_id', sa.String),
                      sa.column('seq', sa.Integer), sa.column('data', sa.LargeBinary))
    instances = sa.table('instances', sa.column('id', sa.String),
                         sa.column('state_data', sa.LargeBinary))
    ids = bind.execute(sa.select(deltas.c.instance_id).distinct()).scalars().all()
    for instance_id in ids:
        blob = bind.execute(sa.select(instances.c.state_data)
                            .where(instances.c.id == instance_id)).scalar_one()
        dct = json.loads(zlib.decompress(blob).decode('utf-8'))
        for data in bind.execute(sa.select(deltas.c.data)
                                 .where(deltas.c.instance_id == instance_id)
                                 .order_by(deltas.c.seq)).scalars():
            _apply(dct, json.loads(zlib.decompress(data).decode('utf-8')))
        text = json.dumps(dct, separators=(',', ':'), ensure_ascii=False)
        bind.execute(instances.update().where(instances.c.id == instance_id)
                     .values(state_data=zlib.compress(text.encode('utf-8'), 6)))
    op.drop_table('instance_state_deltas')
