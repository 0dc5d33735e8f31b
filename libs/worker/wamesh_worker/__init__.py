"""The worker SDK: what a process embeds to serve sessions placed by the workers registry."""

from wamesh_worker.worker import SessionWorker, WorkerSpec

__all__ = ["SessionWorker", "WorkerSpec"]
