"""api tokens: a name, so that staff can tell their tokens apart on the account page and revoke one

Revision ID: c4a9e2d7b6f1
Revises: 5c0e2a7d9f14
Create Date: 2026-12-02 18:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4a9e2d7b6f1'
down_revision = '5c0e2a7d9f14'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=100), nullable=True))


def downgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('name')
