"""Runs localstripe (PyPI: a stateful fake Stripe API) for local use and the tests.

Two changes to how its own `localstripe` command runs it, both made here and not in its
code: it listens on 127.0.0.1 only (the command binds every interface), and its state stays
in memory (the command pickles the whole store to /tmp/localstripe.pickle on every write,
which slows down as objects pile up and is shared by every stack on the machine). A restart
starts from an empty account. Everything else, routes, objects and the webhooks it signs
and sends (`POST /_config/webhooks/{id}` registers an endpoint), is localstripe's.

Usage: python scripts/localstripe_server.py PORT
"""

import sys

from aiohttp import web
from localstripe import resources, server

resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

if __name__ == "__main__":
    port = int(sys.argv[1])
    print(f"localstripe on 127.0.0.1:{port}", flush=True)
    web.run_app(server.app, host="127.0.0.1", port=port, access_log=None, print=None)
