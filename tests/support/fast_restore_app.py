"""The studio's Celery app, sweeping unacknowledged messages every 10 s instead of kombu's ~100 s.

For the redelivery test only: kombu scans for messages past their visibility timeout on every 10th 10-second
tick, so with a 10 s timeout a running job would be handed out again only if it outlived a scan that comes
every ~100 s. Scanning every tick shows the redelivery within seconds; the studio's own setting (a timeout of
a day) needs no such haste.
"""

from worker.celery_app import celery_app

celery_app.conf.broker_transport_options = {**celery_app.conf.broker_transport_options, "unacked_restore_throttle": 1}

__all__ = ["celery_app"]
