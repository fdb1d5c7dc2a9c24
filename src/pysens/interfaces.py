"""The SENS interfaces as Python base classes: subclass one and override the methods you want.

An object of such a class (or any object with the snake_case methods) can be subscribed as a
whole: :meth:`pysens.EventSystem.subscribe` registers the methods it implements.
"""

from __future__ import annotations

from typing import Any

from .events import EventClass

__all__ = ["BASES", "SensLogon", "SensLogon2", "SensNetwork", "SensOnNow"]


class SensLogon2:
    """Subclass and override the ISensLogon2 methods you want (``session_reconnect`` …)."""

    def logon(self, user_name: str, session_id: str) -> Any:
        """A user logged on to session ``session_id``."""

    def logoff(self, user_name: str, session_id: str) -> Any:
        """A user logged off."""

    def session_disconnect(self, user_name: str, session_id: str) -> Any:
        """A session was disconnected (fast user switching, remote desktop); it still runs."""

    def session_reconnect(self, user_name: str, session_id: str) -> Any:
        """A disconnected session was reconnected (never a logon)."""

    def post_shell(self, user_name: str, session_id: str) -> Any:
        """The user's shell is running."""


class SensLogon:
    """Subclass and override the ISensLogon methods you want (``display_lock`` …)."""

    def logon(self, user_name: str) -> Any:
        """A user logged on."""

    def logoff(self, user_name: str) -> Any:
        """A user logged off."""

    def start_shell(self, user_name: str) -> Any:
        """The user's shell is running."""

    def display_lock(self, user_name: str) -> Any:
        """The display was locked."""

    def display_unlock(self, user_name: str) -> Any:
        """The display was unlocked."""

    def start_screen_saver(self, user_name: str) -> Any:
        """The screen saver started."""

    def stop_screen_saver(self, user_name: str) -> Any:
        """The screen saver stopped."""


class SensNetwork:
    """Subclass and override the ISensNetwork methods you want (``connection_made`` …); the
    arguments are the event's ``connection``, ``connection_type``, ``qoc`` and
    ``destination``."""

    def connection_made(self, connection: str, type_: int, qoc_info: Any) -> Any:
        """A network connection was made."""

    def connection_made_no_qoc_info(self, connection: str, type_: int) -> Any:
        """A network connection was made (no quality-of-connection data)."""

    def connection_lost(self, connection: str, type_: int) -> Any:
        """A network connection was lost."""

    def destination_reachable(
        self, destination: str, connection: str, type_: int, qoc_info: Any
    ) -> Any:
        """A destination became reachable."""

    def destination_reachable_no_qoc_info(
        self, destination: str, connection: str, type_: int
    ) -> Any:
        """A destination became reachable (no quality-of-connection data)."""


class SensOnNow:
    """Subclass and override the ISensOnNow methods you want (``on_battery_power`` …); the
    percentage is the event's ``battery_percent``."""

    def on_ac_power(self) -> Any:
        """The machine runs on AC power."""

    def on_battery_power(self, battery_life_percent: int) -> Any:
        """The machine runs on battery."""

    def battery_low(self, battery_life_percent: int) -> Any:
        """The battery is low."""


BASES: dict[EventClass, type] = {
    EventClass.ISensLogon2: SensLogon2, EventClass.ISensLogon: SensLogon,
    EventClass.ISensNetwork: SensNetwork, EventClass.ISensOnNow: SensOnNow,
}
