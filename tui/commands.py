"""Command palette entries for the main screen: only what the signed-in role may do on the tab shown."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .widgets.rollout import RolloutView

# (title, help, action, tab): the same actions the keys run; `tab` None: the screen's own,
# as its `allowed` says; "rollout-tab": the Rollout view's, while that tab shows.
MAIN_ACTIONS = (
    ("Search users", "Filter the grid as you type (/)", "search", None),
    ("Cycle status filter", "All, Pending, Activated, Disabled (f)", "cycle_filter", None),
    ("Enroll selected user", "Assisted enrollment with the QR code (e)", "enroll", None),
    ("Reset 2FA of selected user", "Wipes their secret and recovery codes (r)", "reset", None),
    ("Unlock selected user", "Lifts a lockout (u)", "unlock", None),
    ("Add a user", "A form for a new account (a)", "add", None),
    ("Deactivate or reactivate selected user", "They can no longer sign in, or can again (d)", "deactivate", None),
    ("Import users from CSV", "All rows or none (i)", "import_csv", None),
    ("Export users", "What the grid shows, as CSV or JSON (x)", "export", None),
    ("Revoke selected service client", "Its API key stops working at once; asks first (r)", "revoke_client", None),
    ("Chart over 30 or 90 days", "The Rollout tab's chart (t)", "toggle_span", "rollout-tab"),
    ("Export who to chase", "The selected team's Pending users, as CSV (x)", "export_chase", "rollout-tab"),
    ("Show Rollout", "Tab 1: by team, over time, who to chase", "show_tab('rollout-tab')", None),
    ("Show Users", "Tab 2: every user, search, filters and actions", "show_tab('users-tab')", None),
    ("Show Security", "Tab 3: the 2FA policy, the verification service's clients", "show_tab('security-tab')", None),
    ("Show Audit", "Tab 4: the audit log", "show_tab('audit-tab')", None),
)


class MainScreenCommands(Provider):
    def _allowed(self):
        screen = self.screen
        for title, help_text, action, tab in MAIN_ACTIONS:
            if tab is None:
                if screen.allowed(action.split("(")[0]):
                    yield title, help_text, partial(screen.run_action, action)
            elif screen.active_tab == tab:
                yield title, help_text, partial(screen.query_one(RolloutView).run_action, action)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._allowed():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._allowed():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
