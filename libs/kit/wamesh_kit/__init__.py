"""Code shared by two or more services: config, telemetry, gRPC and storage plumbing."""
