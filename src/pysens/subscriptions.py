"""Persistent subscriptions: adding one (its sink settings checked by the sink) and choosing
the events it receives. The table itself is :mod:`pysens.journal.subscriptions`; delivering to
it is :mod:`pysens.delivery`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._deprecated import moved
from .events import EventClass, SensEvent, parse_method
from .journal import Journal
from .journal.subscriptions import PersistentSubscription, SubscriptionError, SubscriptionStore
from .sinks import validate_settings

__all__ = ["add_subscription", "compile_subscription"]


def add_subscription(
    store: SubscriptionStore, name: str, *, event_class: str, sink: str,
    settings: Mapping[str, Any], **options: Any,
) -> PersistentSubscription:
    """Check ``settings`` with the ``sink`` kind, then :meth:`SubscriptionStore.add` (whose
    keyword ``options`` these are); :class:`SubscriptionError` says what is wrong."""
    try:
        checked = validate_settings(sink, settings)
    except ValueError as e:
        raise SubscriptionError(str(e), 2) from None
    return store.add(name, event_class=event_class, sink=sink, settings=checked, **options)


def compile_subscription(sub: PersistentSubscription) -> Callable[[SensEvent], bool]:
    """The predicate choosing the events ``sub`` receives (class, method, criteria).

    Per-user presence is judged by the delivery loop, which knows who has a session.
    """
    event_class = EventClass(sub.event_class)
    method = parse_method(sub.method) if sub.method else None
    matches: Callable[[SensEvent], bool] | None = None
    if sub.criteria:
        from .criteria import compile_criteria

        matches = compile_criteria(sub.criteria).matches

    def predicate(event: SensEvent) -> bool:
        if event_class not in event.classes:
            return False
        if method is not None and event.method != method:
            return False
        return matches is None or matches(event)

    return predicate


def _mark_history(journal: Journal, seqs: Iterable[int]) -> None:
    journal.mark_history(seqs)


# Names this module had before the journal took the table (pysens 0.1).
__getattr__ = moved(__name__, "pysens.journal.subscriptions", {
    "Subscription": "PersistentSubscription",
    "mark_history": "pysens.subscriptions:_mark_history",
})
