"""recurring newsletters

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 17:35:26.415586
"""

from alembic import op
import sqlalchemy as sa
import alerts.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table('newsletters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recurrence_next_at', alerts.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('approval_required', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('parent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('occurrence', alerts.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_newsletters_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_newsletters_recurrence_next_at'), ['recurrence_next_at'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_newsletters_parent_id'), ['parent_id', 'occurrence'])
        batch_op.create_foreign_key(batch_op.f('fk_newsletters_parent_id_newsletters'), 'newsletters', ['parent_id'], ['id'], ondelete='SET NULL')




def downgrade() -> None:

    with op.batch_alter_table('newsletters', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_newsletters_parent_id_newsletters'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_newsletters_parent_id'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_newsletters_recurrence_next_at'))
        batch_op.drop_index(batch_op.f('ix_newsletters_parent_id'))
        batch_op.drop_column('occurrence')
        batch_op.drop_column('parent_id')
        batch_op.drop_column('approval_required')
        batch_op.drop_column('recurrence_next_at')


