"""example kind (fact/behaviour/both) and knowledge-entry state; suspect documents

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every correction so far went to training: existing rows are behaviour.
    with op.batch_alter_table('example', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default='behaviour'))
        batch_op.add_column(sa.Column('kind_source', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('superseded_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('indexed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('index_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(batch_op.f('ix_example_kind'), ['kind'], unique=False)
        batch_op.create_foreign_key('fk_example_superseded_by', 'example', ['superseded_by'], ['id'],
                                    ondelete='SET NULL')

    op.create_table('suspect_document',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('example_id', sa.Integer(), nullable=False),
    sa.Column('collection', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('cleared_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['example_id'], ['example.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('example_id', 'collection', 'source', name='uq_suspect_example_source')
    )
    with op.batch_alter_table('suspect_document', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_suspect_document_example_id'), ['example_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_suspect_document_source'), ['source'], unique=False)


def downgrade() -> None:
    op.drop_table('suspect_document')
    with op.batch_alter_table('example', schema=None) as batch_op:
        batch_op.drop_constraint('fk_example_superseded_by', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_example_kind'))
        for column in ('index_error', 'indexed_at', 'superseded_by', 'kind_source', 'kind'):
            batch_op.drop_column(column)
