"""Cross-provider delivery policy for one message: classification, circuit breaking, failover."""
