"""Cross-provider delivery policy for one message, without the database: classification,
circuit breaking (breaker.py), failover, and the per-process pool of built providers (pool.py)."""
