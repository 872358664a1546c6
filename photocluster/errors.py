"""Errors that mean "the user asked for something we cannot do": shown as one line, exit code 2."""


class UsageError(Exception):
    """Bad argument or missing input; the message is one line a person can act on."""


class DataMissingError(UsageError):
    """A data set's files are not where they should be; the message says which files and where."""
