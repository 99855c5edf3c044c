"""Testing helpers: the provider emulator (a real local HTTP server)."""

from .emulator import Emulator, EmulatorThread, Fault, RecordedRequest, Reply, serve

__all__ = ["Emulator", "EmulatorThread", "Fault", "RecordedRequest", "Reply", "serve"]
