"""The authoring side of secrets: what people run, never the agent (DESIGN.md §3).

``keys`` reads and changes ``keys/<env>/`` and ``.sops.yaml``; ``store`` is ``promote secrets
set/list`` (values read from stdin, encrypted by sops, never written in plaintext); ``rekey``
re-encrypts after a recipient change; ``checks`` the secrets findings of ``promote validate``;
``parity`` compares the keys of two environments' Secrets (pure). The agent's decrypt path
(``secrets.resolve``, ``sops``, ``vault``) never imports this package.
"""
