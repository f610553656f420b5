"""instance state stored zlib-compressed, in a binary column

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 07:30:00
"""
import zlib

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BATCH = 500
OLD_FORMAT, NEW_FORMAT = 'nd73-1/', 'nd73-2/'


def _convert(source: str, target: str, convert) -> None:
    """Copy every instance's state from column ``source`` to ``target``, in batches by id
    (a large database is never read whole)."""
    bind = op.get_bind()
    instances = sa.table('instances', sa.column('id', sa.String),
                         sa.column('state_format', sa.String),
                         sa.column(source), sa.column(target))
    last = ''
    while True:
        rows = bind.execute(sa.select(instances.c.id, instances.c[source],
                                      instances.c.state_format)
                            .where(instances.c.id > last).order_by(instances.c.id)
                            .limit(BATCH)).all()
        if not rows:
            return
        for instance_id, value, state_format in rows:
            new_value, new_format = convert(value, state_format or '')
            bind.execute(instances.update().where(instances.c.id == instance_id)
                         .values({target: new_value, 'state_format': new_format}))
        last = rows[-1][0]


def upgrade() -> None:
    # NOT NULL needs a default for the rows already there (SQLite adds no such column
    # otherwise); each row gets its real value right after
    empty = "X''" if op.get_bind().dialect.name == 'sqlite' else "''::bytea"
    op.add_column('instances', sa.Column('state_data', sa.LargeBinary(), nullable=False,
                                         server_default=sa.text(empty)))
    _convert('state', 'state_data', lambda text, fmt: (
        zlib.compress((text or '').encode('utf-8'), 1), fmt.replace(OLD_FORMAT, NEW_FORMAT, 1)))
    op.drop_column('instances', 'state')


def downgrade() -> None:
    op.add_column('instances', sa.Column('state', sa.Text(), nullable=True))
    _convert('state_data', 'state', lambda blob, fmt: (
        zlib.decompress(blob).decode('utf-8') if blob else '',
        fmt.replace(NEW_FORMAT, OLD_FORMAT, 1)))
    op.drop_column('instances', 'state_data')
