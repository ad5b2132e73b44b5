"""server-side staff sessions; reader link versions and pending sign-ups

Revision ID: 0006_sessions_and_reader_tokens
Revises: 0005
Create Date: 2026-12-03 13:10:00
"""

from alembic import op
import sqlalchemy as sa
import alerts.models
from sqlalchemy.dialects import postgresql

revision = '0006_sessions_and_reader_tokens'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('web_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', alerts.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', alerts.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', alerts.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', alerts.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_web_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_web_sessions_token_hash'))
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_user_id'), ['user_id'], unique=False)

    # Existing readers keep version 0, which their links sent so far carry.
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_version', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('pending_signup', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_column('pending_signup')
        batch_op.drop_column('token_version')

    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_user_id'))

    op.drop_table('web_sessions')
