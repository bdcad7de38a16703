"""The command categories of ``vfpool-manage`` (see vfpool/cmd/manage.py).

Each module adds its parsers to the oslo.config sub-command and talks to
the database directly, like ``nova-manage``: operators can inspect and
repair the inventory even when no vfpool-server runs.
"""
