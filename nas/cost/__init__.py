"""Resource-aware search: cost tables (`table`), the expected cost and its loss term (`expected`), budgets
in derive (`budget`), measured latency (`latency`) and the parameter and FLOP counts of a network
(`profile`). The derive rule they read as data is `nas.arch.rule`; the `nas cost` command is `nas.cli.cost`."""
