"""Errors that mean "the user asked for something we cannot do": shown as one line, exit code 2."""


class UsageError(Exception):
    """Bad argument or missing input; the message is one line a person can act on."""


class DataMissingError(UsageError):
    """A data set's files are not where they should be; the message says which files and where."""


class WeightsUnavailable(UsageError):
    """A network's pre-trained weights cannot be had (no network, no cached file).

    The message is for the command line; ``backbone``, ``url`` and ``target`` let the app offer its own
    choices in its own words (choose a file, retry the download, or a method trained from scratch).
    """

    def __init__(self, message: str, *, backbone: str, url: str, target: str, reason: str) -> None:
        super().__init__(message)
        self.backbone = backbone
        self.url = url
        self.target = target
        self.reason = reason

    def __reduce__(self):  # picklable with its attributes: it crosses from the training process to the app
        return (_rebuild_weights_unavailable, (str(self), self.backbone, self.url, self.target, self.reason))


def _rebuild_weights_unavailable(message: str, backbone: str, url: str, target: str, reason: str) -> WeightsUnavailable:
    return WeightsUnavailable(message, backbone=backbone, url=url, target=target, reason=reason)
