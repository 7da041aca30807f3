"""initial schema

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_at'), ['at'], unique=False)

    op.create_table('interaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('thread_ts', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('message_ts', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('question', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('answer', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('track', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('adapter_version', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('format_violations', sa.JSON(), nullable=False),
    sa.Column('feedback', sa.Integer(), nullable=True),
    sa.Column('votes', sa.JSON(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_interaction_channel_id'), ['channel_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_interaction_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_interaction_user_id'), ['user_id'], unique=False)

    op.create_table('processed_event',
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('processed_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_processed_event_at'), ['at'], unique=False)

    op.create_table('training_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('track', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('triggered_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('heartbeat_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('worker_host', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('worker_pid', sa.Integer(), nullable=True),
    sa.Column('log_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('adapter_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('lease', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lease')
    )
    with op.batch_alter_table('training_run', schema=None) as batch_op:
        batch_op.create_index('ix_training_run_track_status', ['track', 'status'], unique=False)

    op.create_table('adapter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('track', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('base_model', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('dataset_fingerprint', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('example_ids', sa.JSON(), nullable=False),
    sa.Column('hyperparameters', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('parent_version', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('activated_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('activated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('tainted', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['training_run.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('track', 'version', name='uq_adapter_track_version')
    )
    with op.batch_alter_table('adapter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_adapter_name'), ['name'], unique=True)
        batch_op.create_index(batch_op.f('ix_adapter_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_adapter_track'), ['track'], unique=False)

    op.create_table('example',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('track', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('question', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('context', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('original_answer', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('corrected_answer', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('origin', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('author_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('reviewer_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('reviewed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('interaction_id', sa.Integer(), nullable=True),
    sa.Column('split', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('review_channel', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('review_ts', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('flag', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['interaction_id'], ['interaction.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('track', 'content_hash', name='uq_example_track_hash')
    )
    with op.batch_alter_table('example', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_example_author_id'), ['author_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_example_content_hash'), ['content_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_example_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_example_track'), ['track'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('example', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_example_track'))
        batch_op.drop_index(batch_op.f('ix_example_status'))
        batch_op.drop_index(batch_op.f('ix_example_content_hash'))
        batch_op.drop_index(batch_op.f('ix_example_author_id'))

    op.drop_table('example')
    with op.batch_alter_table('adapter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_adapter_track'))
        batch_op.drop_index(batch_op.f('ix_adapter_status'))
        batch_op.drop_index(batch_op.f('ix_adapter_name'))

    op.drop_table('adapter')
    with op.batch_alter_table('training_run', schema=None) as batch_op:
        batch_op.drop_index('ix_training_run_track_status')

    op.drop_table('training_run')
    with op.batch_alter_table('processed_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_processed_event_at'))

    op.drop_table('processed_event')
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interaction_user_id'))
        batch_op.drop_index(batch_op.f('ix_interaction_created_at'))
        batch_op.drop_index(batch_op.f('ix_interaction_channel_id'))

    op.drop_table('interaction')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_at'))
        batch_op.drop_index(batch_op.f('ix_audit_event_action'))

    op.drop_table('audit_event')
