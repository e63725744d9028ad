"""The web dashboard (``promote ui``): release matrix, pull requests, history and agents.

Read-only, served on 127.0.0.1 unless told otherwise (then only with a token). The entry
points are :func:`promote.ui.app.create_app` and :func:`promote.ui.app.serve`; importing this
package imports no web framework.
"""
