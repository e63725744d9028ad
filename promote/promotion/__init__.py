"""Moving versions between environments through pull requests (DESIGN.md §4).

Pure: ``plan`` (what a promotion changes, gates), ``scope`` (which environments a change
affects, from its paths), ``approvals`` (which approvals count and whether a PR may merge),
``diff`` (rendered before/after, Secret values redacted). Orchestration: ``engine`` (a session
on main: fetch, export, project, forge), ``propose`` (``promote to``/``rollback``/``set-image``),
``review`` (approve, check, merge), ``history``, ``validate`` (the checks ``promote validate``
and the agent share). Adapters are received through the session, never built here.
"""
