"""emailservice: an email delivery service with automatic failover between providers."""
