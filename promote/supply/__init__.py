"""The supply chain (DESIGN.md §7): image digests from OCI registries (``crane``) and cosign
signatures verified offline (``cosign``). ``images`` is pure; the others are adapters, one
outside tool each. Registry credentials are the tools' own: the docker config
(``$DOCKER_CONFIG/config.json``, ``~/.docker/config.json``, credential helpers), which promote
never reads, logs or passes on a command line.
"""
