"""The one error type for bad input: it names the file, the field, the value and what is allowed."""

from __future__ import annotations


class SpecError(ValueError):
    """Invalid user input. `field` is a dotted path (`request_settings.max_queue_wait_ms`)."""

    def __init__(self, message: str, *, field: str | None = None, source: str | None = None,
                 status: int = 400) -> None:
        self.message = message
        self.field = field
        self.source = source
        self.status = status
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.source, self.field) if p)
        return f"{where}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, str | None]:
        return {"message": str(self), "field": self.field, "file": self.source}


class NotFound(SpecError):
    """Something named does not exist; the message names it, so no field prefix."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field, status=404)

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class Conflict(SpecError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field, status=409)
