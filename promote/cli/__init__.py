"""The command line: parse, call one function, print (rich text, or ``-o json``).

One module per command group (``project``, ``promotion``, ``prs``, ``agent``, ``secrets``,
``keys``, ``cluster``, ``demo``); ``main`` loads only the module of the command being run, so
start-up stays small. ``output`` is the one place that maps a :class:`~promote.errors.PromoteError`
to stderr text and an exit code. No logic lives here: a command calls one function of
``promotion``, ``reconcile`` or ``local`` and renders what it returns.
"""
