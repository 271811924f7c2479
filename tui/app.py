"""The appliance's terminal UI: k9s's keys over the control API (`appliance up` on a terminal, or
`appliance tui` against a running daemon)."""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from pathlib import Path
from typing import Any, ClassVar

import yaml
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Label, Static

from tui.actions import ActionForm, Confirm, Help, PromptLine, TextPane, flat
from tui.format import parse_traffic, traffic_text
from tui.source import ApiError, DataSource, History, documents_from_files
from tui.view import Selection, View

VIEWS = ["endpoints", "deployments", "requests", "logs", "metrics", "jobs", "models", "environments", "events"]

GLOBAL_KEYS = [
    (":", "switch view (tab completes): " + " ".join(f":{v}" for v in VIEWS) + "; some take a name: "
          ":requests EP, :deployments EP, :logs EP/DEP, :metrics EP; :q quits"),
    ("/", "filter and highlight the view (esc clears)"), ("?", "this help"), ("esc", "back (or clear the filter)"),
    ("enter", "open: endpoint → deployments → logs; job → logs"), ("d", "describe"), ("y", "YAML"),
    ("l", "logs (endpoint: its request tail; deployment: workers' logs; job: its log files)"),
    ("ctrl-d", "delete (with confirmation)"), ("t", "set live and mirror traffic (endpoint or deployment)"),
    ("s", "scale: instance_count (deployment)"), ("r", "restart: fresh instances (deployment)"),
    ("k", "regenerate a key (endpoint; shown once, c copies)"),
    ("u", "copy a ready curl command (endpoint)"), ("i", "invoke with a request file (response, latency)"),
    ("a", "apply YAML files"), ("m", "metrics of the selected endpoint"), ("q / ctrl-c", "quit")]
VIEW_KEYS = [("space", "requests, logs: pause / resume"), ("end", "requests, logs: follow again"),
             ("c", "jobs: cancel the job (with confirmation); requests: clear"),
             ("↑ ↓ pgup pgdn home", "move; scrolling up stops autoscroll")]
FILTERS = [("requests", "deployment=blue status>=500 status=5xx latency>10 and words"),
           ("other views", "text: rows containing it, highlighted")]


class QuitDialog(ModalScreen[str | None]):
    """Quitting `appliance up`'s TUI: stop the daemon too, or keep it serving headless."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("y", "answer('stop')", "stop"),
                                             Binding("n", "answer('keep')", "keep"),
                                             Binding("escape", "answer(None)", "stay")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text("Quit the terminal UI. Stop the daemon too?", "bold"), classes="question")
            yield Static(Text("no: it keeps serving headless in the foreground (Ctrl-C stops it)", "dim"))
            with Horizontal(classes="buttons"):
                yield Button("Stop it (y)", variant="error", id="stop")
                yield Button("Keep serving (n)", variant="primary", id="keep")
                yield Button("Stay (esc)", id="stay")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)


# k9s's refresh: tables poll every 2 s (their data plane cost, measured in the harness: `--only tui`)
POLL_SECONDS = 2.0


class ApplianceApp(App[str]):
    """`source` is anything with the control API's methods (`tui.source.DataSource`): the real client,
    or a fake in tests. `embedded`: `appliance up` started the daemon with this UI (quitting asks whether
    to stop it); `run()` returns "stop" or "keep" then."""

    CSS_PATH = "app.tcss"
    TITLE = "appliance"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("colon", "command", ":view"), Binding("slash", "filter", "/filter"),
        Binding("question_mark", "help", "help"), Binding("escape", "go_back", "back"),
        Binding("d", "describe", "describe"), Binding("y", "yaml", "yaml"), Binding("l", "logs", "logs"),
        Binding("ctrl+d", "delete", "delete"), Binding("t", "traffic", "traffic"), Binding("s", "scale", "scale"),
        Binding("r", "restart", "restart"),
        Binding("k", "regenerate", "regenerate key"), Binding("u", "curl", "curl"), Binding("i", "invoke", "invoke"),
        Binding("a", "apply", "apply"), Binding("m", "metrics", "metrics"), Binding("q", "leave", "quit"),
        Binding("ctrl+c", "leave", "quit", priority=True)]

    def __init__(self, source: DataSource, *, embedded: bool = False, poll_interval: float = POLL_SECONDS,
                 history: History | None = None, start: str = "endpoints") -> None:
        super().__init__()
        self.source = source
        self.embedded = embedded
        self.poll_interval = poll_interval
        self.history = history or History()
        self.status: dict[str, Any] | None = None
        self.status_error: str | None = None
        self.start = start
        self.status_polls = 0

    def on_mount(self) -> None:
        self.set_interval(2 * self.poll_interval, self.poll_status)
        self.poll_status()
        self.switch_to(self.start)

    # -- header --------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="status")
    def poll_status(self) -> None:
        try:
            status, error = self.source.status(), None
        except ApiError as exc:
            status, error = None, exc.message.split(". ")[0]
        except Exception as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        self.call_from_thread(self.got_status, status, error)

    def got_status(self, status: dict[str, Any] | None, error: str | None) -> None:
        self.status_polls += 1
        self.status, self.status_error = status or self.status, error
        if isinstance(self.screen, View):
            self.screen.refresh_header()

    # -- views ---------------------------------------------------------------------------------

    @property
    def view(self) -> View | None:
        return self.screen if isinstance(self.screen, View) else None

    def make_view(self, name: str, arg: str | None = None) -> View | None:
        from tui.assets import EnvironmentsView, EventsView, ModelsView
        from tui.deployments import DeploymentsView
        from tui.endpoints import EndpointsView
        from tui.jobs import JobsView
        from tui.logs import LogsView
        from tui.metrics import MetricsView
        from tui.requests import RequestsView

        sel = self.view.selected() if self.view else None
        endpoint = arg or (sel.endpoint if sel and sel.kind == "deployment" else
                           sel.name if sel and sel.kind == "endpoint" else None)
        if name == "endpoints":
            return EndpointsView()
        if name == "deployments":
            return DeploymentsView(arg)
        if name == "requests":
            return RequestsView(arg)
        if name == "metrics":
            return MetricsView(endpoint)
        if name == "logs":
            if arg and "/" in arg:
                ep, dep = arg.split("/", 1)
                return LogsView(ep, dep)
            if sel and sel.kind == "deployment" and sel.endpoint:
                return LogsView(sel.endpoint, sel.name)
            self.notify(":logs ENDPOINT/DEPLOYMENT (or select a deployment first)", severity="warning")
            return None
        if name == "jobs":
            return JobsView(arg)
        return {"models": ModelsView, "environments": EnvironmentsView, "events": EventsView}[name]()

    def switch_to(self, name: str, arg: str | None = None) -> None:
        view = self.make_view(name, arg)
        if view is not None:
            self.push_screen(view)

    def action_command(self) -> None:
        def chosen(text: str | None) -> None:
            if not text:
                return
            name, _, arg = text.lstrip(":").partition(" ")
            if name in ("q", "quit", "q!"):
                self.action_leave()
                return
            matches = [v for v in VIEWS if v.startswith(name)]
            if len(matches) != 1 and name not in VIEWS:
                self.notify(f"no view {name!r}: one of {', '.join(VIEWS)}", severity="error")
                return
            self.switch_to(name if name in VIEWS else matches[0], arg.strip() or None)

        self.push_screen(PromptLine(":", suggestions=VIEWS), chosen)

    def action_filter(self) -> None:
        view = self.view
        if view is None:
            return

        def chosen(text: str | None) -> None:
            if text is not None:
                view.set_filter(text)

        self.push_screen(PromptLine("/", view.filter_text), chosen)

    def action_go_back(self) -> None:
        view = self.view
        if view and view.filter_text:
            view.set_filter("")
        elif len(self.screen_stack) > 2:
            self.pop_screen()

    def action_help(self) -> None:
        view = self.view
        here = [(k, v) for k, v in (view.HINTS if view else [])]
        self.push_screen(Help([("keys", GLOBAL_KEYS), (f"this view ({view.NAME if view else ''})", here),
                               ("in views", VIEW_KEYS), ("filters (/)", FILTERS)]))

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        if self.view:
            self.view.drill()

    def selection(self, *kinds: str) -> Selection | None:
        sel = self.view.selected() if self.view else None
        if sel is None or (kinds and sel.kind not in kinds):
            what = " or ".join(kinds) if kinds else "something"
            self.notify(f"select {what} first", severity="warning")
            return None
        return sel

    def action_metrics(self) -> None:
        sel = self.view.selected() if self.view else None
        self.switch_to("metrics", sel.name if sel and sel.kind == "endpoint" else sel.endpoint if sel else None)

    def action_logs(self) -> None:
        sel = self.selection()
        if sel and self.view:
            self.view.logs_of(sel)

    def action_describe(self) -> None:
        sel = self.selection()
        if sel:
            self.describe(sel)

    @work(thread=True, group="describe")
    def describe(self, sel: Selection) -> None:
        lines = Text()
        for key, value in flat(sel.data):
            lines.append(f"{key:<40}", "bold")
            lines.append(f" {value}\n")
        subject = {"deployment": f"{sel.endpoint}/{sel.name}", "endpoint": sel.name}.get(sel.kind)
        if sel.kind == "endpoint":
            try:
                monitors = self.source.list_monitors(sel.name)
            except ApiError:
                monitors = []
            if monitors:
                lines.append("\nmonitors\n", "bold underline")
                for m in monitors:
                    when = f" at {str(m['last_run_at'])[:19]}" if m.get("last_run_at") else ""
                    lines.append(f"  {m['name']} ({m['deployment_name']}): {m.get('status') or 'not run yet'}{when}"
                                 f"; next {str(m.get('next_run_at') or '-')[:19]}\n")
                    for line in m.get("summary") or []:
                        lines.append(f"    {line}\n", "red" if "): FAILED" in line or "): error" in line else "")
        if subject:
            try:
                events = self.source.events(subject=subject, limit=20)
            except ApiError:
                events = []
            if events:
                lines.append("\nevents\n", "bold underline")
                for e in events:
                    lines.append(f"  {str(e.get('at', ''))[:19]}  {e.get('kind')}  "
                                 f"{json.dumps(e.get('detail') or {}, separators=(',', ':'))}\n")
        self.call_from_thread(self.push_screen, TextPane(f"describe {sel.kind} {sel.name}", lines))

    def action_yaml(self) -> None:
        sel = self.selection()
        if sel:
            text = yaml.safe_dump(sel.data, sort_keys=False, allow_unicode=True, width=200)
            self.push_screen(TextPane(f"{sel.kind} {sel.name} (YAML)", text, copy=text))

    # -- actions -------------------------------------------------------------------------------

    def done(self, result: str | None) -> None:
        if result:
            self.notify(result, timeout=4)
            if self.view:
                self.view.tick()

    def action_traffic(self) -> None:
        sel = self.selection("endpoint", "deployment")
        if not sel:
            return
        endpoint = sel.name if sel.kind == "endpoint" else str(sel.endpoint)
        ep = sel.data if sel.kind == "endpoint" else {}
        if not ep:
            try:
                ep = self.source.get_endpoint(endpoint)
            except ApiError as exc:
                self.notify(exc.message, severity="error")
                return
        live, mirror = ep.get("traffic") or {}, ep.get("mirror_traffic") or {}

        def perform(values: dict[str, str]) -> str:
            traffic = parse_traffic(values["traffic"])
            wanted_mirror = parse_traffic(values["mirror"])
            self.source.update_traffic(endpoint, traffic, wanted_mirror if wanted_mirror != mirror else None)
            return f"{endpoint}: traffic {traffic_text(traffic) or '-'}; mirror {traffic_text(wanted_mirror) or '-'}"

        self.push_screen(ActionForm(
            f"traffic of {endpoint}", "live traffic must add up to 100 (or 0); mirror: a deployment=PERCENT "
            "copy of live requests (empty: none)",
            [("traffic", "live traffic (e.g. blue=90 green=10)", traffic_text(live)),
             ("mirror", "mirror traffic (e.g. green=20)", traffic_text(mirror))], perform), self.done)

    def action_scale(self) -> None:
        sel = self.selection("deployment")
        if not sel or not sel.endpoint:
            return
        endpoint = sel.endpoint

        def perform(values: dict[str, str]) -> str:
            count = values["instance_count"].strip()
            self.source.update_deployment(endpoint, sel.name, {"instance_count": count}, wait=60)
            return f"{endpoint}/{sel.name}: instance_count {count}"

        self.push_screen(ActionForm(f"scale {endpoint}/{sel.name}", "instances to run (waits until ready)",
                                    [("instance_count", "instance_count",
                                      str(sel.data.get("instance_count") or 1))], perform, "Scale"), self.done)

    def action_restart(self) -> None:
        sel = self.selection("deployment")
        if not sel or not sel.endpoint:
            return
        endpoint = sel.endpoint

        def perform(_: dict[str, str]) -> str:
            self.source.restart_deployment(endpoint, sel.name)
            return f"{endpoint}/{sel.name}: restarted"

        self.push_screen(ActionForm(f"restart {endpoint}/{sel.name}?", "fresh instances, ready before the old ones "
                                    "drain (waits until they serve)", [], perform, "Restart"), self.done)

    def action_regenerate(self) -> None:
        sel = self.selection("endpoint")
        if not sel:
            return
        shown: dict[str, str] = {}

        def perform(values: dict[str, str]) -> str:
            key_type = values["key_type"].strip()
            self.source.regenerate_keys(sel.name, key_type)
            keys = self.source.get_credentials(sel.name)
            shown["key"] = keys["primaryKey" if key_type == "primary" else "secondaryKey"]
            return key_type

        def after(result: str | None) -> None:
            if result:
                self.push_screen(TextPane(f"new {result} key of {sel.name} (shown once)", shown["key"],
                                          copy=shown["key"]))

        self.push_screen(ActionForm(f"regenerate a key of {sel.name}",
                                    "the old key stops working at once; the new one is shown once",
                                    [("key_type", "primary or secondary", "secondary")], perform, "Regenerate"),
                         after)

    def action_curl(self) -> None:
        sel = self.selection("endpoint", "deployment")
        if sel:
            self.curl(sel.name if sel.kind == "endpoint" else str(sel.endpoint),
                      sel.name if sel.kind == "deployment" else None)

    @work(thread=True, group="curl")
    def curl(self, endpoint: str, deployment: str | None) -> None:
        try:
            ep = self.source.get_endpoint(endpoint)
            secret = (self.source.get_credentials(endpoint)["primaryKey"] if ep.get("auth_mode") == "key"
                      else self.source.get_token(endpoint)["accessToken"])
        except ApiError as exc:
            self.call_from_thread(self.notify, exc.message, severity="error")
            return
        command = (f"curl -sS {shlex.quote(ep['scoring_uri'])} -H {shlex.quote('Authorization: Bearer ' + secret)} "
                   f"-H 'Content-Type: application/json'"
                   + (f" -H {shlex.quote('azureml-model-deployment: ' + deployment)}" if deployment else "")
                   + " -d @request.json")

        def show() -> None:
            self.copy_to_clipboard(command)
            self.push_screen(TextPane(f"curl {endpoint} (copied to the clipboard)", command, copy=command))

        self.call_from_thread(show)

    def action_invoke(self) -> None:
        sel = self.selection("endpoint", "deployment")
        if not sel:
            return
        endpoint = sel.name if sel.kind == "endpoint" else str(sel.endpoint)
        answer: dict[str, str] = {}

        def perform(values: dict[str, str]) -> str:
            path = Path(values["file"].strip()).expanduser()
            try:
                body = path.read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
            started = time.perf_counter()
            response = self.source.invoke(endpoint, body, deployment=values["deployment"].strip() or None)
            took = (time.perf_counter() - started) * 1000
            text = response.text
            with contextlib.suppress(ValueError):
                text = json.dumps(response.json(), indent=2)
            answer["text"] = (f"HTTP {response.status_code}  {took:.1f} ms (round trip, with the key lookup)\n"
                              f"x-request-id: {response.headers.get('x-request-id', '-')}  "
                              f"deployment: {response.headers.get('azureml-model-deployment', '-')}\n\n"
                              + text[:20000])
            return f"HTTP {response.status_code}"

        def after(result: str | None) -> None:
            if result:
                self.push_screen(TextPane(f"invoke {endpoint}: {result}", answer["text"], copy=answer["text"]))

        self.push_screen(ActionForm(f"invoke {endpoint}", "POSTs the file to the scoring URI with the endpoint's key",
                                    [("file", "request file", "request.json"),
                                     ("deployment", "deployment (empty: by traffic)",
                                      sel.name if sel.kind == "deployment" else "")], perform, "Invoke"), after)

    def action_delete(self) -> None:
        sel = self.selection("endpoint", "deployment", "batch-endpoint", "batch-deployment")
        if not sel:
            return
        what = f"{sel.kind} {sel.endpoint + '/' if sel.endpoint else ''}{sel.name}"

        def perform(_: dict[str, str]) -> str:
            if sel.kind == "endpoint":
                self.source.delete_endpoint(sel.name)
            elif sel.kind == "deployment":
                self.source.delete_deployment(str(sel.endpoint), sel.name)
            elif sel.kind == "batch-endpoint":
                self.source.delete_batch_endpoint(sel.name)
            else:
                self.source.delete_batch_deployment(str(sel.endpoint), sel.name)
            return f"deleted {what}"

        self.push_screen(ActionForm(f"delete {what}?", "this cannot be undone", [], perform, "Delete"), self.done)

    def action_cancel_job(self) -> None:
        sel = self.selection("job")
        if not sel:
            return

        def perform(_: dict[str, str]) -> str:
            job = self.source.cancel_job(sel.name)
            return f"job {sel.name}: {job.get('status')}"

        self.push_screen(ActionForm(f"cancel job {sel.name}?", "running mini-batches stop; done ones stay", [],
                                    perform, "Cancel job"), self.done)

    def action_apply(self) -> None:
        def perform(values: dict[str, str]) -> str:
            paths = values["files"].split()
            if not paths:
                raise ValueError("name at least one YAML file")
            try:
                documents = documents_from_files(list(paths))
            except OSError as exc:
                raise ValueError(str(exc)) from None
            result = self.source.apply(documents)
            return "applied: " + json.dumps(result, default=str)[:300]

        self.push_screen(ActionForm("apply", f"YAML files, space-separated (relative to {Path.cwd()})",
                                    [("files", "files", "")], perform, "Apply"), self.done)

    # -- quit ----------------------------------------------------------------------------------

    def action_leave(self) -> None:
        if not self.embedded:
            self.exit("quit")
            return
        if isinstance(self.screen, QuitDialog):
            return

        def answered(answer: str | None) -> None:
            if answer:
                self.exit(answer)

        self.push_screen(QuitDialog(), answered)


def main(url: str | None = None, home: str | None = None) -> None:
    from tui.source import ClientSource

    ApplianceApp(ClientSource(url, home)).run()


__all__ = ["ApplianceApp", "Confirm", "Screen", "main"]
