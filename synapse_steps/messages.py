"""User-facing messages: templates, message codes, and how a message becomes text.

A message code is an enum member that carries its own text and level, so a step
can say ``ctx.log_message(UploadMessages.UPLOADED, count=3)`` and the user sees
"Uploaded 3 files". synapse-sdk's ``LogMessageCode`` members (whose text lives in
the SDK's translator) are resolved through the SDK when it is installed.
"""

from __future__ import annotations

import importlib
from enum import Enum
from typing import Any

LEVELS = ("debug", "info", "success", "warning", "danger", "error", "critical")


class LogLevel(str, Enum):
    """Message and event levels, with synapse-sdk's names and values (a ``str``: ``"warning"``).

    Levels are passed on as this enum, so a runtime context from synapse-sdk (whose
    logger accepts only enum levels) gets what it expects; strings are accepted too.
    """

    DEBUG = "debug"
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    DANGER = "danger"
    ERROR = "error"
    CRITICAL = "critical"


class MessageCode(str, Enum):
    """Base for message codes: ``NAME = ("template text {field}", "level")``.

    ``template`` is its text, ``level`` its level, ``key`` its name (sent with the
    message, like the SDK's code value). The member's value is the pair, so a code
    class shipped to a Ray worker by value keeps its levels.

    Example:
        >>> class UploadMessages(MessageCode):
        ...     UPLOADED = ("Uploaded {count} files", "success")
        >>> resolve_message(UploadMessages.UPLOADED, count=3)
        ('Uploaded 3 files', 'success', 'UPLOADED')
    """

    def __new__(cls, template: str, level: str = "info") -> MessageCode:
        """Members are declared as ``(template, level)``; the member itself compares equal to its template."""
        member = str.__new__(cls, template)
        member._value_ = (template, level_name(level))
        return member

    @property
    def template(self) -> str:
        """The message text with ``{placeholders}`` for ``resolve_message``."""
        return str(self.value[0])

    @property
    def level(self) -> str:
        """The message's level name (``info``, ``success``, ``warning``, ...)."""
        return str(self.value[1])

    @property
    def key(self) -> str:
        """The member's name, reported with the message so consumers can match on it instead of the text."""
        return self.name


def level_name(level: Any) -> str:
    """``"warning"`` for ``"warning"``, ``"WARNING"`` or an enum member whose value is ``"warning"``."""
    value = level.value if isinstance(level, Enum) else level
    name = str(value).lower()
    if name not in LEVELS:
        raise ValueError(f"unknown message level {level!r}; expected one of {', '.join(LEVELS)}")
    return name


def resolve_message(
    message: Any, level: Any = "info", language: str = "en", **kwargs: Any
) -> tuple[str, str, str | None]:
    """``(text, level, key)`` for a plain string, a ``{lang: template}`` dict or a message code.

    Templates are formatted with ``kwargs`` (``str.format``); a plain string without
    ``kwargs`` is used as is, as in synapse-sdk.
    """
    if isinstance(message, MessageCode):
        return message.template.format(**kwargs), message.level, message.key
    if isinstance(message, Enum) and hasattr(message, "level"):
        return _resolve_sdk_code(message, language, **kwargs)
    if isinstance(message, dict):
        template = message.get(language) or message.get("en", "")
        return (template.format(**kwargs) if kwargs else template), level_name(level), None
    text = str(message)
    return (text.format(**kwargs) if kwargs else text), level_name(level), None


def _resolve_sdk_code(code: Enum, language: str, **kwargs: Any) -> tuple[str, str, str | None]:
    """A synapse-sdk ``LogMessageCode``: its text comes from the SDK's translator."""
    try:
        sdk = importlib.import_module("synapse_sdk.plugins.log_messages")
    except ImportError:
        return str(code.value), level_name(getattr(code, "level", "info")), str(code.value)
    text, level = sdk.resolve_log_message(code, language=language, **kwargs)
    return text, level_name(level), str(code.value)
