"""Where pull requests live: the local forge (in the Git remote), Gitea and GitHub.

``base`` is the protocol the promotion engine needs and its values (and the signed approval
document); ``factory`` is the one module that knows every forge and picks the project's.
``local`` + ``records`` keep PRs as refs and JSON records in the remote; ``rest`` holds what
Gitea and GitHub share over their REST APIs (``http`` is the client, ``payload`` the pure
JSON mapping), ``gitea``/``github`` their differences. The forges never import each other and
never judge approvals (``promotion.approvals`` does).
"""
