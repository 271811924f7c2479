"""Modal screens: the `:` and `/` lines, confirmations, action forms (a refusal shows the daemon's
message in place and changes nothing), text panes (describe, YAML, results; `c` copies), help."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Static

from tui.source import ApiError


class PromptLine(ModalScreen[str | None]):
    """`:view` (with completion: tab or → accepts) or `/filter`, at the top; enter submits, esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel"),
                                             Binding("tab", "complete", "complete", show=False, priority=True)]
    DEFAULT_CSS = """
    PromptLine { align: center top; background: $background 30%; }
    PromptLine > Input { width: 100%; margin-top: 1; border: tall $accent; }
    """

    def __init__(self, prefix: str, value: str = "", suggestions: list[str] | None = None) -> None:
        super().__init__()
        self.prefix, self.value, self.suggestions = prefix, value, suggestions or []

    def compose(self) -> ComposeResult:
        suggester = SuggestFromList(self.suggestions, case_sensitive=False) if self.suggestions else None
        field = Input(self.value, placeholder=self.prefix + (" | ".join(self.suggestions) if self.suggestions
                                                              else "text to filter and highlight"),
                      suggester=suggester, id="prompt")
        field.border_title = self.prefix
        yield field

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_complete(self) -> None:
        field = self.query_one(Input)
        if field._suggestion:
            field.value = field._suggestion
            field.cursor_position = len(field.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("y", "answer(True)", "yes"), Binding("n", "answer(False)", "no"),
                                             Binding("escape", "answer(False)", "no")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.question, "bold"), classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ActionForm(ModalScreen[str | None]):
    """One field or a few; `perform(values)` runs in a thread: it returns what to show, or raises
    ApiError/ValueError, whose message shows here in place (nothing changed; the form stays open)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, explain: str, fields: list[tuple[str, str, str]],
                 perform: Callable[[dict[str, str]], str], verb: str = "Apply") -> None:
        super().__init__()
        self.title_text, self.explain, self.fields, self.perform, self.verb = title, explain, fields, perform, verb

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text, "bold"), classes="question")
            if self.explain:
                yield Static(Text(self.explain, "dim"), classes="explain")
            for name, label, value in self.fields:
                yield Label(label)
                yield Input(value, id=f"f-{name}")
            yield Static("", id="error")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.verb} (enter)", variant="warning", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def submit(self) -> None:
        values = {name: self.query_one(f"#f-{name}", Input).value for name, _, _ in self.fields}
        self.query_one("#error", Static).update(Text("working…", "yellow"))
        self.query_one("#ok", Button).disabled = True
        self.run(values)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @work(thread=True, exclusive=True)
    def run(self, values: dict[str, str]) -> None:
        try:
            result = self.perform(values)
        except (ApiError, ValueError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            self.app.call_from_thread(self.refused, message)
            return
        self.app.call_from_thread(self.dismiss, result)

    def refused(self, message: str) -> None:
        self.query_one("#error", Static).update(Text(f"refused: {message}", "bold red"))
        self.query_one("#ok", Button).disabled = False
        self.query_one(Input).focus()

    @property
    def error_message(self) -> str:
        return str(self.query_one("#error", Static).render())


class TextPane(ModalScreen[None]):
    """Describe, YAML, an action's result; `c` copies `copy` (e.g. a regenerated key, a curl command)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "close"), Binding("q", "close", "close"),
                                             Binding("c", "copy", "copy")]

    def __init__(self, title: str, body: str | Text, copy: str | None = None) -> None:
        super().__init__()
        self.title_text, self.body, self.copy = title, body, copy

    def compose(self) -> ComposeResult:
        with Vertical(classes="pane"):
            yield Label(Text.assemble((self.title_text, "bold"),
                                      ("   c copies · esc closes" if self.copy else "   esc closes", "dim")))
            with VerticalScroll():
                yield Static(self.body, id="body", markup=False)

    def action_copy(self) -> None:
        if self.copy:
            self.app.copy_to_clipboard(self.copy)
            self.app.notify("copied to the clipboard")

    def action_close(self) -> None:
        self.dismiss(None)


class Help(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "close"), Binding("q", "close", "close"),
                                             Binding("question_mark", "close", "close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        text = Text()
        for title, keys in self.sections:
            text.append(f"{title}\n", "bold underline")
            for key, what in keys:
                text.append(f"  {key:<12}", "bold cyan")
                text.append(f"{what}\n")
            text.append("\n")
        with Vertical(classes="pane"):
            yield Label(Text.assemble(("help", "bold"), ("   esc closes", "dim")))
            with VerticalScroll():
                yield Static(text, id="body")

    def action_close(self) -> None:
        self.dismiss(None)


def flat(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A resource as `key: value` lines for `describe`."""
    out: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, dict | list) and v:
                out += flat(v, f"{prefix}{k}.")
            else:
                out.append((f"{prefix}{k}", "" if v is None else str(v)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += flat(v, f"{prefix}{i}.")
    return out
