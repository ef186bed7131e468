"""The inbox's tabs, defined once: which conversations each one lists.

The server renders from this what every reader needs: the rows a tab's page starts from (and
its stream keeps live), on each row the tabs it is in, and on the tab links which tabs list
the viewing agent's conversations only and which show a count. static/dashboard.js reads
those from the page; it knows no tab's rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chat.models import OPEN, ConversationState, Status

TabName = Literal["waiting", "mine", "open", "closed"]
# The rows a page holds, and its stream keeps live: every open conversation, or those and
# the latest closed ones too.
Inbox = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class Tab:
    label: str
    statuses: tuple[Status, ...]  # the conversations it lists, by status...
    own: bool = False  # ...and only those assigned to the agent viewing it

    @property
    def inbox(self) -> Inbox:
        """The rows its page holds: every open conversation (for every tab's count), and the
        latest closed ones too if it lists closed ones."""
        return "open" if set(self.statuses) <= set(OPEN) else "closed"

    @property
    def counted(self) -> bool:
        """Whether its link shows how many it lists: only if every page holds them all (the
        latest closed ones are on the Closed tab's page only, and only the latest)."""
        return self.inbox == "open"


TABS: dict[TabName, Tab] = {
    "waiting": Tab("Waiting", ("waiting",)),
    "mine": Tab("Mine", OPEN, own=True),
    "open": Tab("All open", OPEN),
    "closed": Tab("Closed", ("closed",)),
}


def of(state: ConversationState) -> list[TabName]:
    """The tabs ``state``'s row is in: the same for every agent, since a row is rendered once
    for all of them; a tab of the agent's own also asks whose the row is."""
    return [name for name, tab in TABS.items() if state.status in tab.statuses]
