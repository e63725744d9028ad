"""The reconcile agent of one environment (DESIGN.md §5).

``loop`` decides when (full passes, polling, backoff, leader election, the HTTP endpoints);
``agent`` runs one pass (compare, apply, prune via ``pruning``, health) and heals drift;
``desired`` builds the desired objects of a revision (``source`` fetches and exports it from
Git, kustomize renders, secrets resolve in memory); ``status`` and ``metrics`` publish what
happened; ``report`` serves ``promote status``/``diff``; ``gate`` reads agents' status for the
soak gate; ``factory`` builds an agent from settings. The agent reads its environment's sync
settings from the revision it deploys.
"""
