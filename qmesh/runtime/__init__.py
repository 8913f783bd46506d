"""Running a service: settings, JSON logging, metrics, health endpoints, one asyncio loop."""
