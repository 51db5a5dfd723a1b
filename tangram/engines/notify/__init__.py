"""Notifications and outbound webhooks: channels (in-app, email, DingTalk and
WeCom group robots), sandboxed message templates, per-user channel
preferences, webhook subscriptions per form and event, and one outbox of
deliveries sent by the worker with retries and a delivery log."""
