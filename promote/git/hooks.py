"""The ``post-receive`` hook ``promote hooks install`` writes into a bare remote.

A local bare repository has no forge to send webhooks, so after each push its hook POSTs a
GitHub-style push payload (``{"ref", "before", "after"}``, signed ``X-Hub-Signature-256``) to
each agent's ``/hooks/git``. The hook is a small stdlib-only Python script run by the Python
that installed it; the secret sits beside it in ``promote-webhook.secret`` (mode 0600), never in
the script. A notification that fails (agent down, timeout) is reported on the pusher's
terminal and never fails the push: the agents' polling catches up.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from promote.errors import GitError

MARKER = "# promote: post-receive webhook notifier"
SECRET_FILE = "promote-webhook.secret"

_SCRIPT = '''#!{python}
{marker}
"""Written by `promote hooks install`; rewrite it with the same command."""
import hashlib, hmac, json, os, sys, urllib.request

URLS = {urls!r}
here = os.path.dirname(os.path.abspath(sys.argv[0]))
with open(os.path.join(here, "..", {secret_file!r}), "rb") as f:
    secret = f.read().strip()
for line in sys.stdin:
    parts = line.split()
    if len(parts) != 3:
        continue
    before, after, ref = parts
    body = json.dumps({{"ref": ref, "before": before, "after": after}}).encode()
    sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    for url in URLS:
        req = urllib.request.Request(url, data=body, method="POST", headers={{
            "Content-Type": "application/json", "X-Hub-Signature-256": sig}})
        try:
            urllib.request.urlopen(req, timeout=2).close()
        except Exception as exc:  # the push stands; polling catches up
            print(f"promote: could not notify {{url}}: {{exc}}", file=sys.stderr)
'''


def install_post_receive(bare: Path, *, urls: list[str], secret: bytes) -> Path:
    """Write (or rewrite) ``bare``'s post-receive hook notifying ``urls``; return its path.
    A post-receive hook promote did not write is left alone (GitError)."""
    if not (bare / "HEAD").is_file() or not (bare / "objects").is_dir():
        raise GitError(
            f"{bare}: not a bare Git repository",
            hint="Pass the remote's directory (the one holding HEAD and objects/).",
        )
    hook = bare / "hooks" / "post-receive"
    if hook.exists() and MARKER not in hook.read_text(errors="replace"):
        raise GitError(
            f"{hook}: a post-receive hook promote did not write is in place",
            hint="Merge it by hand with `promote hooks install`'s script, or remove it.",
        )
    hook.parent.mkdir(exist_ok=True)
    secret_path = bare / SECRET_FILE
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    hook.write_text(
        _SCRIPT.format(
            python=sys.executable, marker=MARKER, urls=list(urls), secret_file=SECRET_FILE
        )
    )
    hook.chmod(0o755)
    return hook
