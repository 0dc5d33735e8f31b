"""wamesh's outbound dispatcher: every message wamesh sends reaches Twilio through it."""
