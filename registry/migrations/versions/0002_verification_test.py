"""Each verification row names the statistical test whose counts and p-value it holds.

Rows written before the column get it from their details: "sequential e-process" -> e-process,
"all-licensees" -> fisher-iut (each licensee was a fixed test), anything else -> fisher-iut.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verifications") as batch:
        batch.add_column(sa.Column("test", sa.String(64), nullable=True))
    table = sa.table("verifications", sa.column("id", sa.Integer), sa.column("details", sa.JSON),
                     sa.column("test", sa.String))
    connection = op.get_bind()
    for row_id, details in connection.execute(sa.select(table.c.id, table.c.details)).all():
        old = (details or {}).get("test") if isinstance(details, dict) else None
        name = "e-process" if old == "sequential e-process" else "fisher-iut"
        connection.execute(table.update().where(table.c.id == row_id).values(test=name))


def downgrade() -> None:
    with op.batch_alter_table("verifications") as batch:
        batch.drop_column("test")
