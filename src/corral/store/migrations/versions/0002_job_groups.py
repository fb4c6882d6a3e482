"""job groups (Hail compatibility): nested groups of jobs in a batch

Revision ID: 0002_job_groups
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_job_groups'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_groups',
    sa.Column('batch_id', sa.BigInteger(), nullable=False),
    sa.Column('job_group_id', sa.Integer(), nullable=False),
    sa.Column('update_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('callback', sa.Text(), nullable=True),
    sa.Column('cancelled', sa.Boolean(), nullable=False),
    sa.Column('cancel_after_n_failures', sa.Integer(), nullable=True),
    sa.Column('time_created', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_job_groups_batch_id_batches')),
    sa.PrimaryKeyConstraint('batch_id', 'job_group_id', name=op.f('pk_job_groups'))
    )
    op.create_table('job_group_updates',
    sa.Column('batch_id', sa.BigInteger(), nullable=False),
    sa.Column('update_id', sa.Integer(), nullable=False),
    sa.Column('start_job_group_id', sa.Integer(), nullable=False),
    sa.Column('n_job_groups', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id', 'update_id'], ['batch_updates.batch_id', 'batch_updates.update_id'], name=op.f('fk_job_group_updates_batch_id_batch_updates')),
    sa.PrimaryKeyConstraint('batch_id', 'update_id', name=op.f('pk_job_group_updates'))
    )
    with op.batch_alter_table('jobs') as batch_op:
        batch_op.add_column(sa.Column('job_group_id', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch_op:
        batch_op.drop_column('job_group_id')
    op.drop_table('job_group_updates')
    op.drop_table('job_groups')
