"""Activity: tell people what happened (Slack, a webhook), best effort.

A notification is not evidence (the timeline and the audit log are), so a notifier that keeps
failing does not hold a deployment back: the workflow gives up after a few tries and records
that the notification was not delivered.
"""

from __future__ import annotations

from temporalio import activity

from activities._support import to_application_error
from zdp.errors import ZdpError
from zdp.notify import Notification, Notifier, NotifyReceipt, notifier_from_env


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
        """Send to every configured backend; False when none is configured. (Histories from
        before `post_notification` call this one.)"""
        return (await self.post_notification(notification)).delivered

    @activity.defn
    async def post_notification(self, notification: Notification) -> NotifyReceipt:
        """Send to every configured backend; the approval messages posted, which the workflow
        closes when the deployment ends. Not delivered when no notifier is configured."""
        notifier = self.notifier()
        if notifier is None:
            return NotifyReceipt(delivered=False)
        try:
            posted = await notifier.send(notification)
        except ZdpError as err:
            raise to_application_error(err) from None
        return NotifyReceipt(delivered=True, messages=list(posted or []))
