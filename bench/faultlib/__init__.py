"""The process-level fault campaign: real replicas, real Redis, the fake Slack, and faults injected into them.

`harness` starts and signals the processes; `process_faults` holds the scenarios that hurt the replicas
themselves. `bench/fault_scenarios.py` gathers every scenario under a name and prints their figures as JSON.
"""
