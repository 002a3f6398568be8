"""Field types for request bodies that PostgreSQL can store.

JSON may carry ``\\u0000`` but PostgreSQL text cannot hold it: such a value is a client error
(422), found while validating rather than as a failed INSERT.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StrictStr


def reject_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


#: A JSON string (no coercion from numbers) without NUL characters.
Text = Annotated[StrictStr, AfterValidator(reject_nul)]
