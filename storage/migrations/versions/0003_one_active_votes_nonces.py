"""one active adapter per track (partial unique index), votes as rows, request nonces

Revision ID: 0003
Revises: 0002
"""
import json
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    bind = op.get_bind()
    # Two racing activations could leave two active versions of a track: keep the latest activated.
    rows = bind.execute(sa.text("SELECT id, track FROM adapter WHERE status = 'active' "
                                "ORDER BY track, activated_at DESC, id DESC")).all()
    seen = set()
    for row_id, track in rows:
        if track in seen:
            bind.execute(sa.text("UPDATE adapter SET status = 'retired' WHERE id = :id"), {"id": row_id})
        seen.add(track)
    with op.batch_alter_table('adapter', schema=None) as batch_op:
        batch_op.create_index('uq_adapter_one_active', ['track'], unique=True, sqlite_where=ACTIVE,
                              postgresql_where=ACTIVE)

    op.create_table('vote',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('interaction_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['interaction_id'], ['interaction.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('interaction_id', 'user_id', name='uq_vote_interaction_user')
    )
    with op.batch_alter_table('vote', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_interaction_id'), ['interaction_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vote_user_id'), ['user_id'], unique=False)
    # The votes kept so far in interaction.votes become rows.
    vote = sa.table('vote', sa.column('interaction_id'), sa.column('user_id'), sa.column('value'),
                    sa.column('at', sqlmodel.sql.sqltypes.UTCDateTime()))
    now = datetime.now(UTC)
    for interaction_id, votes in bind.execute(sa.text("SELECT id, votes FROM interaction")).all():
        for user_id, value in (json.loads(votes) if isinstance(votes, str) else votes or {}).items():
            bind.execute(vote.insert().values(interaction_id=interaction_id, user_id=user_id, value=int(value),
                                              at=now))

    op.create_table('request_nonce',
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('digest')
    )
    with op.batch_alter_table('request_nonce', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_request_nonce_at'), ['at'], unique=False)


def downgrade() -> None:
    op.drop_table('request_nonce')
    op.drop_table('vote')
    with op.batch_alter_table('adapter', schema=None) as batch_op:
        batch_op.drop_index('uq_adapter_one_active')
