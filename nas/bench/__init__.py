"""`nas bench`: speed and memory of the real search or retrain loop (`run`), and its console table and
JSON file (`report`). Speed and memory targets live here, never in timed tests."""
