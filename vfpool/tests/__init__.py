"""Tests select oslo.service's threading backend before anything else."""

from oslo_service import backend

backend.init_backend(backend.BackendType.THREADING)
