"""The run's environment settings: a dict with synapse-sdk's typed getters."""

from __future__ import annotations

from typing import Any


class RunEnvironment(dict[str, Any]):
    """``runtime_ctx.env``: a plain dict (picklable, ``env["KEY"]`` works) plus the getters
    of synapse-sdk's ``PluginEnvironment`` with the same conversions.

    Example:
        >>> env = RunEnvironment({"BATCH": "32", "DEBUG": "true"})
        >>> env.get_int("BATCH"), env.get_bool("DEBUG"), env.get_str("MISSING", "x")
        (32, True, 'x')
    """

    def get_str(self, key: str, default: str | None = None) -> str | None:
        """The value as a string, or ``default`` when the key is missing."""
        value = self.get(key)
        return default if value is None else str(value)

    def get_int(self, key: str, default: int | None = None) -> int | None:
        """The value as an int, or ``default`` when missing; ValueError if it is not a number."""
        value = self.get(key)
        return default if value is None else int(value)

    def get_float(self, key: str, default: float | None = None) -> float | None:
        """The value as a float, or ``default`` when missing; ValueError if it is not a number."""
        value = self.get(key)
        return default if value is None else float(value)

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        """``"true"``, ``"1"`` and ``"yes"`` (any case) are True; other strings are False."""
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            return value.lower() in ("true", "1", "yes")
        return bool(value)

    def get_list(self, key: str, default: list[Any] | None = None) -> list[Any] | None:
        """A list as is; a string split on commas (blank items dropped)."""
        value = self.get(key)
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return default

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy, safe to serialize or mutate."""
        return dict(self)

    @classmethod
    def of(cls, env: Any) -> RunEnvironment:
        """From a mapping, a ``RunEnvironment`` or anything with ``to_dict()`` (the SDK's ``PluginEnvironment``)."""
        if env is None:
            return cls()
        return cls(env.to_dict() if hasattr(env, "to_dict") else env)
