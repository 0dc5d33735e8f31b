"""wamesh's gRPC contracts: ``wamesh.<area>.v1``, generated from protos/ by tools/protos.py."""
