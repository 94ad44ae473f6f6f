"""Run an RQ worker (with its scheduler) inside the app context.

    python worker.py           work until stopped
    python worker.py --burst   process everything queued, then exit
"""
import argparse

from app import create_app
from app.queue import AppWorker, redis_connection, task_queue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="process everything queued, then exit")
    args = parser.parse_args()
    app = create_app()
    with app.app_context():
        worker = AppWorker([task_queue()], connection=redis_connection(), app=app)
    worker.work(burst=args.burst, with_scheduler=True)


if __name__ == "__main__":
    main()
