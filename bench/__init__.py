"""`make bench`: throughput, latency, failover and memory figures as ratios against baselines."""
