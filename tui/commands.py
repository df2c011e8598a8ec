"""Command palette entries for the main screen: only what the signed-in role may do here."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, help, action) — the same actions the key bindings run.
MAIN_ACTIONS = (
    ("Search users", "Filter the grid as you type (/)", "search"),
    ("Cycle status filter", "All, Pending, Activated, Disabled (f)", "cycle_filter"),
    ("Enroll selected user", "Assisted enrollment with the QR code (e)", "enroll"),
    ("Reset 2FA of selected user", "Wipes their secret and recovery codes (r)", "reset"),
    ("Unlock selected user", "Lifts a lockout (u)", "unlock"),
    ("Add a user", "A form for a new account (a)", "add"),
    ("Deactivate or reactivate selected user", "(d)", "deactivate"),
    ("Import users from CSV", "All rows or none (i)", "import_csv"),
    ("Export users", "CSV or JSON (x)", "export"),
    ("Show Rollout", "Tab 1: by team, over time, who to chase", "show_tab('rollout-tab')"),
    ("Show Users", "Tab 2", "show_tab('users-tab')"),
    ("Show Security", "Tab 3: the 2FA policy", "show_tab('security-tab')"),
    ("Show Audit", "Tab 4: the audit log", "show_tab('audit-tab')"),
)


class MainScreenCommands(Provider):
    def _allowed(self):
        screen = self.screen
        for title, help_text, action in MAIN_ACTIONS:
            name = action.split("(")[0]
            if screen.check_action(name, ()) is not False:
                yield title, help_text, partial(screen.run_action, action)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._allowed():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._allowed():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
