"""Each verification row can point to its signed record: the file's path and sha256.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verifications") as batch:
        batch.add_column(sa.Column("record_path", sa.Text(), nullable=True))
        batch.add_column(sa.Column("record_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verifications") as batch:
        batch.drop_column("record_digest")
        batch.drop_column("record_path")
