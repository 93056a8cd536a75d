"""The error a user's mistake raises.

Authors
 * sercaf-toolkit developers 2026
"""


class UserError(Exception):
    """A user's mistake whose message is the whole story.

    The command line prints it as one line, names the thing and the fix,
    and exits with status 2; a traceback would only hide the message
    (``--debug`` or ``SERCAF_DEBUG=1`` shows it anyway).

    Example
    -------
    >>> str(UserError("unknown key number_of_epoch"))
    'unknown key number_of_epoch'
    """


class SettingError(UserError, ValueError):
    """A block given a setting it cannot take (a recipe key's value).

    Raised while the model is built, before training writes anything; the
    message names the recipe key and the fix.
    """
