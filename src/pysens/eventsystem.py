"""The COM+-style event system: transient subscriptions and ``fire()`` / ``afire()``.

A subscription names an event class, optionally one method, optionally filter criteria. Its
target is a callable taking the event (sync or async), or an object implementing the class's
methods in snake_case (``session_reconnect(user_name, session_id)``).

Delivery rules:

* one subscriber's exception or overrun never stops the others; it is logged with the event id
  and counted (``EVENT_S_SOME_SUBSCRIBERS_FAILED`` / ``EVENT_E_ALL_SUBSCRIBERS_FAILED``);
* async subscribers are cancelled at their time limit. Python cannot stop a running function, so
  a sync subscriber that overruns is reported as failed once it returns; code that may block for
  long belongs in a persistent exec sink (a process that is killed at its limit);
* ``per_user`` subscriptions get events only while their owner has a session (tracked from the
  Logon / Logoff events fired here, or asked of ``session_provider``);
* subscribers are called in the order they subscribed; ``parallel`` async subscribers of one
  event run concurrently, after the others (one dispatch, :meth:`EventSystem._dispatch`;
  ``fire`` and ``afire`` only drive it).

Matching does not scan every subscription: per method there is a plan with the unfiltered
subscribers and indexes by the equalities the criteria imply (user, session, host).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .aio import within
from .criteria import Criteria, compile_criteria
from .events import (
    CLASS_METHODS,
    METHOD_PARAMETERS,
    EventClass,
    Method,
    SensEvent,
    fold_name,
    parse_method,
    snake_case,
)
from .interfaces import BASES

__all__ = ["EventSystem", "FireResult", "Subscription"]

log = logging.getLogger("pysens.eventsystem")

Handler = Callable[[SensEvent], Any]


class FireResult(IntEnum):
    """What ``fire()`` answers, with the COM+ HRESULT values."""

    S_OK = 0
    EVENT_S_SOME_SUBSCRIBERS_FAILED = 0x00040200
    EVENT_E_ALL_SUBSCRIBERS_FAILED = 0x80040201
    EVENT_S_NOSUBSCRIBERS = 0x00040202


#: SENS parameter name -> the event field that carries it.
_PARAMETER_FIELDS = {
    "bstrUserName": "user_name", "dwSessionId": "session_id", "bstrConnection": "connection",
    "ulType": "connection_type", "lpQOCInfo": "qoc", "bstrDestination": "destination",
    "dwBatteryLifePercent": "battery_percent",
}


def _arguments(cls: EventClass, method: Method, event: SensEvent) -> tuple[Any, ...]:
    return tuple(getattr(event, _PARAMETER_FIELDS[p]) for p in METHOD_PARAMETERS[cls][method])


# -- subscriptions ------------------------------------------------------------------------------

_order = itertools.count()


@dataclass(eq=False)
class Subscription:
    """A transient subscription (it dies with the process). Toggle ``enabled`` at will."""

    #: None: every class (a plain callable watching everything, like the daemon's watchers).
    event_class: EventClass | None
    method: Method | None
    criteria: Criteria | None
    handlers: dict[Method, Handler]
    is_async: bool
    per_user: bool = False
    owner: str | None = None
    parallel: bool = False
    timeout: float = 180.0
    name: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    target: Any = None
    _enabled: bool = True
    _system: EventSystem | None = field(default=None, repr=False)
    _order: int = field(default_factory=lambda: next(_order), repr=False)

    @property
    def enabled(self) -> bool:
        """A disabled subscription receives nothing until enabled again."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        if self._system is not None:
            self._system._invalidate()


@dataclass(slots=True)
class _Plan:
    """Who may get events of one method: plain callables, the rest, and the indexes."""

    fast: tuple[Handler, ...]  # enabled, sync, unfiltered, not per-user: just call them
    slow: tuple[Subscription, ...]  # enabled, unindexed, need a check or special handling
    by_user: dict[str, list[Subscription]]
    by_session: dict[str, list[Subscription]]
    by_host: dict[str, list[Subscription]]
    #: Only plain callables, and not a Logon / Logoff (no session bookkeeping): fire() just
    #: calls them.
    simple: bool = False
    #: Anything beyond the plain callables to look at (slow ones or an index).
    checked: bool = False
    #: An async subscriber among them (else fire() drives the dispatch without a loop).
    any_async: bool = False


_INDEXED = (("user_name", "by_user"), ("session_id", "by_session"), ("host", "by_host"))


class EventSystem:
    """Transient subscriptions and ``fire()`` / ``afire()``.

    ``session_provider(user_name) -> bool`` answers whether a user has a session now (for
    ``per_user`` subscriptions); by default the system counts the Logon / Logoff it fires.
    """

    def __init__(self, session_provider: Callable[[str], bool] | None = None) -> None:
        self._subs: dict[str, Subscription] = {}
        self._plans: dict[Method, _Plan] = {}
        self._session_provider = session_provider
        self._open: dict[str, set[tuple[str, str | None]]] = {}

    # -- subscribing -----------------------------------------------------------------------------

    def subscribe(
        self,
        target: Any,
        event_class: str | EventClass | None = EventClass.ISensLogon2,
        method: str | Method | None = None,
        criteria: str | Criteria | None = None,
        *,
        enabled: bool = True,
        per_user: bool = False,
        owner: str | None = None,
        parallel: bool = False,
        timeout: float = 180.0,
        name: str | None = None,
    ) -> Subscription:
        """Subscribe ``target`` (a callable taking the event, or an object with the class's
        snake_case methods); ``event_class=None`` subscribes a callable to every event of
        every class (each event once). Raises ValueError for a bad class or method,
        CriteriaError for bad criteria, TypeError for a target whose methods have the wrong
        signature."""
        if per_user and not owner:
            raise ValueError("a per_user subscription needs an owner")
        if event_class is None:
            if method or not callable(target) or _implements_any(target):
                raise ValueError("a subscription to every class takes a plain callable and no "
                                 "method")
            _check_callable(target)
            crit = compile_criteria(criteria) if isinstance(criteria, str) else criteria
            return self._add(Subscription(
                event_class=None, method=None, criteria=crit,
                handlers=dict.fromkeys(Method, target), is_async=_is_async(target),
                per_user=per_user, owner=fold_name(owner) if owner else None,
                parallel=parallel, timeout=timeout, name=name, target=target,
                _enabled=enabled, _system=self))
        try:
            cls = EventClass(str(event_class))
        except ValueError:
            raise ValueError(f"unknown event class {event_class!r}; valid classes are: "
                             f"{', '.join(c.value for c in EventClass)}") from None
        m = None
        if method:
            m = parse_method(method)
            if not _class_has(cls, m):
                raise ValueError(f"{cls}.{method} does not exist; {cls} has "
                                 f"{', '.join(x.value for x in CLASS_METHODS[cls])}")
        crit = compile_criteria(criteria) if isinstance(criteria, str) else criteria
        handlers, is_async = _handlers(target, cls, m)
        return self._add(Subscription(
            event_class=cls, method=m, criteria=crit, handlers=handlers, is_async=is_async,
            per_user=per_user, owner=fold_name(owner) if owner else None, parallel=parallel,
            timeout=timeout, name=name, target=target, _enabled=enabled, _system=self,
        ))

    def _add(self, sub: Subscription) -> Subscription:
        self._subs[sub.id] = sub
        self._invalidate()
        return sub

    def unsubscribe(self, subscription: Subscription | str) -> bool:
        """Remove a subscription (or its id); False when it was not there."""
        sid = subscription if isinstance(subscription, str) else subscription.id
        sub = self._subs.pop(sid, None)
        if sub is None:
            return False
        sub._system = None
        self._invalidate()
        return True

    @property
    def subscriptions(self) -> list[Subscription]:
        """The current subscriptions, oldest first."""
        return sorted(self._subs.values(), key=lambda s: s._order)

    def _invalidate(self) -> None:
        self._plans.clear()

    def _plan(self, method: Method) -> _Plan:
        plan = _Plan((), (), {}, {}, {})
        fast: list[Handler] = []
        slow: list[Subscription] = []
        classes = _delivery_classes(method)
        for sub in self.subscriptions:
            if not sub.enabled or (sub.event_class is not None
                                   and sub.event_class not in classes):
                continue
            if sub.method is not None and sub.method is not method:
                continue
            if method not in sub.handlers:
                continue
            eqs = sub.criteria.equalities if sub.criteria else {}
            for column, attr in _INDEXED:
                if column in eqs:
                    getattr(plan, attr).setdefault(eqs[column], []).append(sub)
                    break
            else:
                if sub.criteria is None and not sub.per_user and not sub.is_async:
                    fast.append(sub.handlers[method])
                else:
                    slow.append(sub)
        plan.fast = tuple(fast)
        plan.slow = tuple(slow)
        plan.checked = bool(slow or plan.by_user or plan.by_session or plan.by_host)
        plan.simple = not plan.checked and method not in (Method.Logon, Method.Logoff)
        plan.any_async = any(sub.is_async for sub in slow) or any(
            sub.is_async for index in (plan.by_user, plan.by_session, plan.by_host)
            for subs in index.values() for sub in subs)
        self._plans[method] = plan
        return plan

    # -- firing ------------------------------------------------------------------------------------

    def _candidates(self, event: SensEvent, plan: _Plan) -> list[Subscription]:
        found: list[Subscription] = list(plan.slow)
        several = False
        if plan.by_user and event.user_name is not None:
            hit = plan.by_user.get(fold_name(event.user_name))
            if hit:
                several = bool(found)
                found.extend(hit)
        if plan.by_session and event.session_id is not None:
            hit = plan.by_session.get(event.session_id)
            if hit:
                several = several or bool(found)
                found.extend(hit)
        if plan.by_host:
            hit = plan.by_host.get(event.host)
            if hit:
                several = several or bool(found)
                found.extend(hit)
        if several:
            found.sort(key=lambda s: s._order)
        return found

    def _admits(self, sub: Subscription, event: SensEvent) -> bool:
        if sub.criteria is not None and not sub.criteria.matches(event):
            return False
        if sub.per_user:
            owner = sub.owner or ""
            if self._session_provider is not None:
                return self._session_provider(owner)
            return owner in self._open
        return True

    def _track_before(self, event: SensEvent) -> None:
        if event.method is Method.Logon and event.user_name:
            self._open.setdefault(fold_name(event.user_name), set()).add(
                (event.host, event.session_id))

    def _track_after(self, event: SensEvent) -> None:
        if event.method is Method.Logoff and event.user_name:
            user = fold_name(event.user_name)
            sessions = self._open.get(user)
            if sessions is not None:
                sessions.discard((event.host, event.session_id))
                if not sessions:
                    del self._open[user]

    def fire(self, event: SensEvent) -> FireResult:
        """Deliver ``event`` to every matching subscriber; the COM+ result.

        Async subscribers are run to completion (in a private event loop when none runs in
        this thread; from inside a running loop, use :meth:`afire`)."""
        plan = self._plan_of(event)
        if plan.simple:
            return _call_simple(plan.fast, event)  # the hot path: plain callables only
        admitted = self._admitted(event, plan)
        dispatch = self._dispatch(event, plan, admitted)
        if not plan.any_async or not any(sub.is_async for sub in admitted):
            # Nothing in the dispatch awaits: drive it to its end right here.
            try:
                dispatch.send(None)
            except StopIteration as done:
                result: FireResult = done.value
                return result
            raise AssertionError("a dispatch without async subscribers suspended")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(dispatch)
        dispatch.close()
        self._track_after(event)
        raise RuntimeError("fire() was called from a running event loop with async "
                           "subscribers: use 'await afire(event)'")

    async def afire(self, event: SensEvent) -> FireResult:
        """:meth:`fire` from asyncio: async subscribers are awaited (parallel ones together)."""
        plan = self._plan_of(event)
        if plan.simple:
            return _call_simple(plan.fast, event)
        return await self._dispatch(event, plan, self._admitted(event, plan))

    def _plan_of(self, event: SensEvent) -> _Plan:
        method: Method = event.method  # type: ignore[assignment]  # canonical after __init__
        return self._plans.get(method) or self._plan(method)

    def _admitted(self, event: SensEvent, plan: _Plan) -> list[Subscription]:
        """The subscriptions (beyond the plain callables) that get ``event``, in order. A
        Logon counts for per-user presence before it is delivered (the owner's own Logon
        reaches them)."""
        self._track_before(event)
        if not plan.checked:
            return []
        return [sub for sub in self._candidates(event, plan) if self._admits(sub, event)]

    async def _dispatch(self, event: SensEvent, plan: _Plan,
                        admitted: list[Subscription]) -> FireResult:
        """The one delivery of an event: the plain callables, then the admitted subscribers
        in subscription order (async ones awaited in turn, parallel ones together at the end);
        a Logoff ends the owner's presence after it is delivered."""
        delivered, failed = len(plan.fast), _call_plain(plan.fast, event)
        together: list[Awaitable[bool]] = []
        for sub in admitted:
            delivered += 1
            if not sub.is_async:
                failed += not self._call_sync(sub, event)
            elif sub.parallel:
                together.append(self._call_async(sub, event))
            else:
                failed += not await self._call_async(sub, event)
        if together:
            failed += sum(not ok for ok in await asyncio.gather(*together))
        self._track_after(event)
        return _result(delivered, failed)

    def _call_sync(self, sub: Subscription, event: SensEvent) -> bool:
        start = time.monotonic()
        try:
            sub.handlers[event.method](event)  # type: ignore[index]
        except Exception:
            log.exception("subscriber %s failed on event %s", _label(sub), event.id)
            return False
        took = time.monotonic() - start
        if took > sub.timeout:
            log.error("subscriber %s took %.1f s on event %s, over its %.1f s limit",
                      _label(sub), took, event.id, sub.timeout)
            return False
        return True

    async def _call_async(self, sub: Subscription, event: SensEvent) -> bool:
        try:
            await within(sub.timeout, sub.handlers[event.method](event))  # type: ignore[index]
        except TimeoutError:
            log.error("subscriber %s exceeded its %.1f s limit on event %s; cancelled",
                      _label(sub), sub.timeout, event.id)
            return False
        except Exception:
            log.exception("subscriber %s failed on event %s", _label(sub), event.id)
            return False
        return True


def _call_plain(handlers: tuple[Handler, ...], event: SensEvent) -> int:
    """Call the plain callables of a plan; how many failed (each logged with the event id)."""
    failed = 0
    for handler in handlers:
        try:
            handler(event)
        except Exception:
            failed += 1
            log.exception("subscriber %r failed on event %s", handler, event.id)
    return failed


def _call_simple(handlers: tuple[Handler, ...], event: SensEvent) -> FireResult:
    """A plan of plain callables only (the fire() benchmark's path): call them, answer."""
    failed = _call_plain(handlers, event)
    if not failed:
        return FireResult.S_OK if handlers else FireResult.EVENT_S_NOSUBSCRIBERS
    return _result(len(handlers), failed)


def _label(sub: Subscription) -> str:
    return sub.name or repr(sub.target)


def _result(delivered: int, failed: int) -> FireResult:
    if delivered == 0:
        return FireResult.EVENT_S_NOSUBSCRIBERS
    if failed == 0:
        return FireResult.S_OK
    if failed == delivered:
        return FireResult.EVENT_E_ALL_SUBSCRIBERS_FAILED
    return FireResult.EVENT_S_SOME_SUBSCRIBERS_FAILED


def _class_has(cls: EventClass, method: Method) -> bool:
    names = CLASS_METHODS[cls]
    return method in names or (method is Method.PostShell and Method.StartShell in names)


def _delivery_classes(method: Method) -> frozenset[EventClass]:
    return frozenset(c for c in EventClass if _class_has(c, method))


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))  # noqa: B004


def _handlers(
    target: Any, cls: EventClass, only: Method | None
) -> tuple[dict[Method, Handler], bool]:
    """Per method, a function taking the event; and whether they are coroutines."""
    wanted = [only] if only else [parse_method(m) for m in CLASS_METHODS[cls]]
    if not isinstance(target, type) and _implements(target, cls):
        out: dict[Method, Handler] = {}
        flags = []
        for m in CLASS_METHODS[cls]:
            canonical = parse_method(m)
            if canonical not in wanted:
                continue
            fn = _own_method(target, cls, snake_case(m))
            if fn is None:
                continue
            _check_signature(target, fn, cls, m)
            out[canonical] = _adapter(fn, cls, m)
            flags.append(_is_async(fn))
        if not out:
            raise TypeError(f"{type(target).__name__} implements none of the {cls} methods"
                            + (f" ({only})" if only else ""))
        if len(set(flags)) > 1:
            raise TypeError(f"{type(target).__name__} mixes async and plain methods: "
                            "make them all one or the other")
        return out, flags[0]
    if not callable(target):
        raise TypeError(f"cannot subscribe {target!r}: give a callable taking the event, or an "
                        f"object with {cls} methods in snake_case")
    _check_callable(target)
    return dict.fromkeys(wanted, target), _is_async(target)


def _implements_any(target: Any) -> bool:
    return any(_implements(target, c) for c in EventClass)


def _implements(target: Any, cls: EventClass) -> bool:
    if isinstance(target, BASES[cls]):
        return True
    return any(callable(getattr(target, snake_case(m), None)) for m in CLASS_METHODS[cls])


def _own_method(target: Any, cls: EventClass, name: str) -> Callable[..., Any] | None:
    fn = getattr(target, name, None)
    if not callable(fn):
        return None
    base = BASES[cls]
    if isinstance(target, base) and getattr(type(target), name, None) is getattr(base, name):
        return None  # the base class's no-op: not implemented by this subscriber
    return fn  # type: ignore[no-any-return]


def _check_signature(target: Any, fn: Callable[..., Any], cls: EventClass, m: Method) -> None:
    params = METHOD_PARAMETERS[cls][m]
    try:
        inspect.signature(fn).bind(*params)
    except TypeError:
        wanted = ", ".join(params) or "no arguments"
        raise TypeError(f"{type(target).__name__}.{snake_case(m)} must take ({wanted}) for "
                        f"{cls}.{m}") from None
    except ValueError:
        return  # a builtin without a signature: trust it


def _check_callable(fn: Callable[..., Any]) -> None:
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        raise TypeError(f"{fn!r} must take one argument, the event") from None
    except ValueError:
        return


def _adapter(fn: Callable[..., Any], cls: EventClass, m: Method) -> Handler:
    if cls is EventClass.ISensLogon2:
        return lambda e: fn(e.user_name, e.session_id)
    if cls is EventClass.ISensLogon:
        return lambda e: fn(e.user_name)
    return lambda e: fn(*_arguments(cls, m, e))
