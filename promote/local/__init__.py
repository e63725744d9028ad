"""What runs on one machine for demos and tests (DESIGN.md §3).

``controlplane`` starts a real kube-apiserver + etcd on 127.0.0.1 with certificates from
``pki``; ``processes`` tracks the processes started here by PID; ``seed`` prepares the demo's
world (example repository, people's GnuPG keys, OpenBao); ``world`` runs ``promote`` as its
people would; ``story`` is the demo's narrated steps and ``demo`` runs them and tears down.
It drives promotion and reconcile as a user does, so it sits at their level, below ``cli``.
"""
