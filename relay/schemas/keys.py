"""/admin key bodies with controls (relay.key_admin checks the values themselves). On update a
field that is absent is kept; null (or "none") clears it."""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from relay.schemas.admin import MAX_LABEL_CHARS, not_a_bool

_Amount = Union[StrictStr, StrictInt, float]


class KeyControlsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget_usd: Annotated[Optional[_Amount], not_a_bool('"25"')] = None
    budget_period: Optional[StrictStr] = None
    models: Optional[Union[list[StrictStr], StrictStr]] = Field(default=None)
    rpm: Optional[Union[StrictInt, StrictStr]] = None
    tpm: Optional[Union[StrictInt, StrictStr]] = None

    def given(self) -> dict[str, Any]:
        """The controls the body names (null included), for relay.key_admin."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class KeyCreateIn(KeyControlsIn):
    label: Optional[StrictStr] = Field(default=None, max_length=MAX_LABEL_CHARS)

    def given(self) -> dict[str, Any]:
        return {name: value for name, value in super().given().items() if name != "label"}
