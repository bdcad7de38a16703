"""vfpool inside Nova: a libvirt compute driver and its command.

Needs Nova (``pip install vfpool[nova]``); vfpool's servers and agents
never import this package.  :mod:`vfpool.nova.driver` is the driver,
:mod:`vfpool.nova.cmd` the ``vfpool-nova-compute`` program that makes it
loadable, :mod:`vfpool.nova.config` how it reads vfpool's configuration.
"""
