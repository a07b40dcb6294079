"""Errors a user can cause, and how the command line reports them.

A `UserError` carries one sentence that says what is wrong and how to fix it. The entry point prints it
without a traceback (set GPT_LIGHTNING_TRACEBACK=1 to see one) and exits with status 2.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


class UserError(Exception):
    """Something the user can fix: a bad path, a bad config, corrupt or mismatched data, no network."""


@contextlib.contextmanager
def reported_user_errors() -> Iterator[None]:
    """Turn a UserError (also one raised inside Lightning's or jsonargparse's calls) into a one-line message
    on stderr and exit status 2."""
    try:
        yield
    except UserError as e:
        if os.environ.get("GPT_LIGHTNING_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
