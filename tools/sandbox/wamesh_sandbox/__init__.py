"""A local Twilio: the Messages API, signed webhooks and faults, for development and tests."""
