"""The one exception type a user sees: a one-line message naming the problem and the fix."""


class DeepvisError(Exception):
    """A problem with the user's input (file, camera, model, layer, config).

    The CLI prints ``str(error)`` on one line and exits non-zero; no traceback.
    """
