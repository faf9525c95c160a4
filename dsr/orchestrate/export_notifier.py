"""The Airflow side of "your export is ready": :class:`ExportReadyNotifier`, a ``BaseNotifier`` on the
``finish_exports`` task's success.

It sends one message per export the DAG run completed — request id, ticket, when the package expires and,
with ``notify.link: true`` on S3 exports, a presigned link; never the data or the subject id — through
:meth:`ExportReadyNotifier.send`. By default ``send`` posts to the policy's ``notify.webhook`` (the step has
usually done that already, and nothing is sent twice on a channel). A deployment plugs in e-mail or Slack by
subclassing and overriding ``send`` (the ``channel`` names it in the audit log), and naming the subclass in
``$DSR_EXPORT_NOTIFIER`` (``package.module:name``, importable where the DAGs are parsed and run)::

    class MailDesk(ExportReadyNotifier):
        channel = "mail-desk"

        def send(self, message):
            SmtpNotifier(to="privacy@example.com", subject=f"export {message['request_id']} ready", ...).notify({})

Deliveries are retried (``notify.attempts``) and recorded (``notified`` / ``notify_failed``); a failure never
fails the task. ``callbacks(step)`` gives the ``@task`` keyword arguments that attach it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier

__all__ = ["ENV", "ExportReadyNotifier", "callbacks", "configured"]

STEP = "finish_exports"
ENV = "DSR_EXPORT_NOTIFIER"


class ExportReadyNotifier(BaseNotifier):
    """Tells the person's side that the run's export packages are ready."""

    channel = "webhook"

    def send(self, message: Mapping[str, Any]) -> Any:
        """Deliver one message (raise to have it retried); default: POST it to the policy's webhook."""
        from dsr.steps import webhook

        cfg = self._policy.delivery.notify
        if cfg is None:
            raise RuntimeError("no notify.webhook in the policy: override send() to deliver elsewhere")
        return webhook.post_json(cfg.webhook, message, cfg.timeout_seconds)

    def notify(self, context: Any) -> None:
        """Called by Airflow after the task succeeded, outside its execution: the policy and the batch come from
        ``context`` (the run's Params and run id), never from ``get_current_context``."""
        from dsr.core import control
        from dsr.orchestrate.airflow_dag import batch_id, task_policy
        from dsr.steps import notify

        self._policy = task_policy(context)
        cfg = self._policy.delivery.notify
        if cfg is None and type(self).send is ExportReadyNotifier.send:
            return  # nothing configured and nothing plugged in
        ready = [r.request_id for r in control.list_requests(self._policy, run_id=batch_id(context))
                 if r.kind == "export" and r.status == "completed"]
        sent = notify.deliver(self._policy, ready, self.send, channel=self.channel,
                              attempts=cfg.attempts if cfg else 3, link=bool(cfg and cfg.link))
        self.log.info("export notifications (%s): %d sent, %d failed", self.channel,
                      sum(sent.values()), sum(not ok for ok in sent.values()))


def configured() -> ExportReadyNotifier:
    """``$DSR_EXPORT_NOTIFIER`` (``package.module:name``: an ``ExportReadyNotifier`` subclass, built with no
    arguments, or an instance of one), else an ``ExportReadyNotifier``. Read where the DAGs are parsed."""
    from dsr.orchestrate.alerts import named

    found = named(ENV)
    if found is None:
        return ExportReadyNotifier()
    spec, target = found
    if isinstance(target, type) and issubclass(target, ExportReadyNotifier):
        return target()
    if isinstance(target, ExportReadyNotifier):
        return target
    raise RuntimeError(f"{ENV}={spec!r}: not an ExportReadyNotifier subclass or instance")


def callbacks(step_name: str, notifier: BaseNotifier | None = None) -> dict[str, Any]:
    """``@task`` keyword arguments for a step: the notifier (``notifier``, else :func:`configured`) on
    ``finish_exports``' success, nothing elsewhere."""
    return {"on_success_callback": [notifier or configured()]} if step_name == STEP else {}
