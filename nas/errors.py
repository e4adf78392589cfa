"""The one exception type for mistakes a user can fix (bad config, bad file, missing data).

The CLI turns a `UserError` into one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
