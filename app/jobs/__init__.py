"""RQ job entry points. Each runs inside the app context that worker.py sets up."""
