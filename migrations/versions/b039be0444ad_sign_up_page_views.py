"""sign-up page views: form views per page and day, for conversion

Revision ID: b039be0444ad
Revises: 18fb62ae9470
Create Date: 2026-12-01 08:06:24.079907

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b039be0444ad'
down_revision = '18fb62ae9470'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('signup_page_views',
    sa.Column('integration_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('views', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['integration_id'], ['integrations.id'], name=op.f('fk_signup_page_views_integration_id_integrations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_signup_page_views_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('integration_id', 'day', name=op.f('pk_signup_page_views'))
    )
    with op.batch_alter_table('signup_page_views', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signup_page_views_organization_id'), ['organization_id'], unique=False)



def downgrade():
    with op.batch_alter_table('signup_page_views', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signup_page_views_organization_id'))

    op.drop_table('signup_page_views')
