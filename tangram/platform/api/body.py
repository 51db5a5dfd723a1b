"""The base of every request body the API reads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Body(BaseModel):
    """A request body: keys it does not define are refused with 422 naming
    them — a misspelled optional key (``"verison"``) would otherwise be
    ignored, and with it the check it asked for."""

    model_config = ConfigDict(extra="forbid")
