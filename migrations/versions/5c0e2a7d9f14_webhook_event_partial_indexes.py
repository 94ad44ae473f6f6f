"""webhook events: each address's indexes hold only the events that arrived there

An event arrived either at an integration's address (integration_id) or at the organisation's
Meta app address (meta_app_id), never both; indexing the other column's NULLs cost intake two
index writes per event.

Revision ID: 5c0e2a7d9f14
Revises: b039be0444ad
Create Date: 2026-12-02 13:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c0e2a7d9f14'
down_revision = 'b039be0444ad'
branch_labels = None
depends_on = None


def only_rows_with(column):
    condition = sa.text(f"{column} IS NOT NULL")
    return {"sqlite_where": condition, "postgresql_where": condition}


def upgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_webhook_events_integration_dedup', type_='unique')
        batch_op.drop_constraint('uq_webhook_events_meta_app_dedup', type_='unique')
        batch_op.drop_index('ix_webhook_events_integration_id_id')
        batch_op.drop_index('ix_webhook_events_meta_app_id_id')
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index('uq_webhook_events_integration_dedup', ['integration_id', 'dedup_key'], unique=True,
                              **only_rows_with('integration_id'))
        batch_op.create_index('ix_webhook_events_integration_id_id', ['integration_id', 'id'],
                              **only_rows_with('integration_id'))
        batch_op.create_index('uq_webhook_events_meta_app_dedup', ['meta_app_id', 'dedup_key'], unique=True,
                              **only_rows_with('meta_app_id'))
        batch_op.create_index('ix_webhook_events_meta_app_id_id', ['meta_app_id', 'id'],
                              **only_rows_with('meta_app_id'))


def downgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_meta_app_id_id')
        batch_op.drop_index('uq_webhook_events_meta_app_dedup')
        batch_op.drop_index('ix_webhook_events_integration_id_id')
        batch_op.drop_index('uq_webhook_events_integration_dedup')
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_events_meta_app_id_id', ['meta_app_id', 'id'], unique=False)
        batch_op.create_index('ix_webhook_events_integration_id_id', ['integration_id', 'id'], unique=False)
        batch_op.create_unique_constraint('uq_webhook_events_meta_app_dedup', ['meta_app_id', 'dedup_key'])
        batch_op.create_unique_constraint('uq_webhook_events_integration_dedup', ['integration_id', 'dedup_key'])
