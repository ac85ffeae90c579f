"""Activity: tell people what happened (Slack, a webhook), best effort.

A notification is not evidence (the timeline and the audit log are), so a notifier that keeps
failing does not hold a deployment back: the workflow gives up after a few tries and records
that the notification was not delivered.
"""

from __future__ import annotations

from temporalio import activity

from activities._support import to_application_error
from zdp.errors import ZdpError
from zdp.notify import Notification, Notifier, notifier_from_env


class NotifyActivities:
    def __init__(self, notifier: Notifier | None = None) -> None:
        self._notifier = notifier
        self._loaded = notifier is not None

    def notifier(self) -> Notifier | None:
        if not self._loaded:
            self._notifier = notifier_from_env()
            self._loaded = True
        return self._notifier

    @activity.defn
    async def notify(self, notification: Notification) -> bool:
        """Send to every configured backend; False when none is configured."""
        notifier = self.notifier()
        if notifier is None:
            return False
        try:
            await notifier.send(notification)
        except ZdpError as err:
            raise to_application_error(err) from None
        return True
