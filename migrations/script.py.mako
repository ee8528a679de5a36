"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.settings import Settings

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade(settings: Settings) -> None:
    ${upgrades if upgrades else "pass"}


def downgrade(settings: Settings) -> None:
    ${downgrades if downgrades else "pass"}
