"""NATS JetStream: the Publisher port, connecting, and provisioning streams and KV buckets."""
