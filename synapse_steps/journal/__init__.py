"""The durable run journal: what ran, where, with what result and context, and what was rolled back.

Storage layer for runs that outlive their driver (SQLAlchemy Core on SQLite or Postgres).
Start with :class:`Journal` (open, start or take over a run, history) and
:class:`RunJournal` (the writer of one run).
"""

from synapse_steps.errors import JournalError
from synapse_steps.journal.fingerprint import entries_of, fingerprint
from synapse_steps.journal.journal import Journal, new_run_id
from synapse_steps.journal.location import default_url
from synapse_steps.journal.records import (
    ContextCommit,
    ErrorInfo,
    Owner,
    Progress,
    RollbackRecord,
    RollbackStatus,
    RunDetail,
    RunStatus,
    RunSummary,
    StepAttempt,
    StepEntry,
    StepStatus,
)
from synapse_steps.journal.run_journal import RunJournal

__all__ = [
    "ContextCommit",
    "ErrorInfo",
    "Journal",
    "JournalError",
    "Owner",
    "Progress",
    "RollbackRecord",
    "RollbackStatus",
    "RunDetail",
    "RunJournal",
    "RunStatus",
    "RunSummary",
    "StepAttempt",
    "StepEntry",
    "StepStatus",
    "default_url",
    "entries_of",
    "fingerprint",
    "new_run_id",
]
