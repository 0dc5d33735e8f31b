"""wamesh: a multi-tenant WhatsApp messaging backend on Twilio, as a mesh of gRPC services."""

__version__ = "0.1.0"
