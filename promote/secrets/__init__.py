"""Secrets: the agent's decrypt path, and apart from it the authoring side.

Decrypt path (what the agent runs): ``resolve`` turns rendered SOPS Secrets and ``vault:``
references into plaintext in memory (the one module that knows both ``sops`` and ``vault``),
``cache`` keeps results by ciphertext hash, ``redact`` hides values in anything shown,
``values`` holds types whose ``repr`` never shows plaintext, ``sopsmeta`` reads a SOPS
document's metadata, ``files`` finds an environment's SOPS files. ``gpg`` is the GnuPG adapter
(keys and approval signatures). ``authoring/`` is what people run (keys, set, rotate, checks,
parity); the decrypt path never imports it (an import contract says so).
"""
