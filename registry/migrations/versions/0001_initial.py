"""The first schema: owners' keys, certificates and verification records.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("public_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(64), sa.ForeignKey("keys.key_id"), nullable=False),
        sa.Column("base_model", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("licensee", sa.Text(), nullable=True),
        sa.Column("subject", sa.JSON(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("selfcheck", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_certificates_key_id", "certificates", ["key_id"])
    op.create_index("ix_certificates_created_at", "certificates", ["created_at"])
    op.create_table(
        "verifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("certificate_id", sa.String(64), sa.ForeignKey("certificates.id"), nullable=True),
        sa.Column("certificate_digest", sa.String(64), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("adapter", sa.Text(), nullable=True),
        sa.Column("trigger_sure", sa.Integer(), nullable=False),
        sa.Column("trigger_total", sa.Integer(), nullable=False),
        sa.Column("control_sure", sa.Integer(), nullable=False),
        sa.Column("control_total", sa.Integer(), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("certified", sa.Boolean(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_verifications_certificate_id", "verifications", ["certificate_id"])
    op.create_index("ix_verifications_certificate_digest", "verifications", ["certificate_digest"])


def downgrade() -> None:
    op.drop_table("verifications")
    op.drop_table("certificates")
    op.drop_table("keys")
