"""Resource-aware search: cost tables (`table`), the derive rule as data (`rule`), the expected cost and its
loss term (`expected`), budgets in derive (`budget`) and measured latency (`latency`)."""
