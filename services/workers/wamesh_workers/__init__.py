"""The session-worker registry: which worker holds each session, fenced by an epoch."""
