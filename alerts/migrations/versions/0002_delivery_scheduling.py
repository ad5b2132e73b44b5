"""delivery scheduling

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 17:07:08.011730
"""

from alembic import op
import sqlalchemy as sa
import alerts.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('due_at', alerts.models.UTCDateTime(timezone=True), nullable=True))
    # Rows that existed before could be sent at once.
    op.execute("UPDATE deliveries SET due_at = created_at")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.alter_column('due_at', existing_type=alerts.models.UTCDateTime(timezone=True), nullable=False)
        batch_op.create_index('ix_deliveries_subscriber_kind_created_at', ['subscriber_id', 'kind', 'created_at'], unique=False)

    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quiet_start', sa.Time(), nullable=True))
        batch_op.add_column(sa.Column('quiet_end', sa.Time(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_column('quiet_end')
        batch_op.drop_column('quiet_start')

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_subscriber_kind_created_at')
        batch_op.drop_column('due_at')

