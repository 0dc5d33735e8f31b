"""The worker SDK: what a process embeds to serve sessions placed by the workers registry."""
