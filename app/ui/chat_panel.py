"""The chat: a list of chats on the left, the conversation and the question box on the right
(its HTML pieces that need no widget are in app/ui/chat_html.py).

The conversation is one QTextBrowser holding HTML built from the stored messages (cached per
message) plus the answer being streamed. Tokens arrive already coalesced by the worker; the
panel re-renders at most every 50 ms, so a fast model costs a few renders a second, not one
per token, and such a render replaces only the streamed answer's block, so its cost does not
grow with the length of the chat. Actions (sources, [n] markers, copy, edit, regenerate) are links with private
schemes, handled by `_on_link`: no widget per message, and the text stays selectable.

The chat store (SQLite in WAL mode; a read or a small write takes about a millisecond, and
the answer being streamed is saved in short transactions, so a read waits for one at most)
is used on the GUI thread for listing and opening chats; everything that touches the model or the library runs on the window's one-thread LLM
pool, and streamed answers are written there.
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QPoint, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QGuiApplication, QKeyEvent, QPalette, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.answers import ChatEvent
from app.core.tools.calls import supports_tools
from app.core.tools.runner import ApprovalRequest
from app.ui.chat_html import (  # noqa: F401 - SECTION_IN_LINK, source_link_text: tests
    SECTION_IN_LINK,
    _call_html,
    _field,
    _remote_marker,
    _tools_html,
    source_link_text,
    source_preview_html,
)
from app.ui.markdown import code_blocks, to_html
from app.ui.widgets import ElidingComboBox

log = logging.getLogger(__name__)

CHAT_ROLE = Qt.ItemDataRole.UserRole
RENDER_INTERVAL_MS = 50
SCOPE_LABELS = [("all", "All documents"), ("collections", "Some collections…"),
                ("documents", "Chosen documents…"), ("none", "No documents")]



NO_TOOLS_NOTICE = "This model can't use tools (no tool-call format in its chat template)."


class QuestionEdit(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line, Esc stops the answer."""

    submitted = Signal()
    escaped = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.escaped.emit()
            return
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class ChecklistDialog(QDialog):
    """Pick several items (collections or documents) for a chat's scope."""

    def __init__(self, title: str, items: list[tuple[str, str]], checked: list[str], parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        layout = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.setAccessibleName(title)
        for key, label in items:
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setToolTip(key)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if key in checked else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        if not items:
            layout.addWidget(QLabel("Nothing to choose from yet: add documents first."))
        layout.addWidget(self.list)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def chosen(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.CheckState.Checked]


class ChatPanel(QWidget):
    open_source = Signal(dict)  # path, page, page_end, section, text, n (+ char offsets if known)
    chat_changed = Signal(object)  # chat id or None
    token_received = Signal(str)
    sources_received = Signal(list)
    answer_finished = Signal(object)  # the final ChatEvent, or None after a failure
    busy_changed = Signal(bool)
    about_to_answer = Signal()  # before a job reads the chat: pending edits must be saved
    status = Signal(str)
    error = Signal(str, str)
    approval_requested = Signal(object)  # an ApprovalRequest shown in the chat
    _model_loaded = Signal(object)  # ModelInfo, from whichever thread loaded it

    def __init__(self, folio, workers, *, collections=list, documents=list, tools=None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.folio = folio
        self.workers = workers
        # () -> ToolRunner: the tools a model that can call them is offered (None: Folio's).
        self.tools = tools
        self.approval: ApprovalRequest | None = None
        self.collections_provider = collections
        self.documents_provider = documents  # -> [(path, title)]
        self.chat_id: int | None = None
        self._store = None
        self.messages: list = []
        self.job = None
        self.stream: dict | None = None
        self.editing_id: int | None = None
        self._html_cache: dict[tuple, str] = {}
        self._shown_head: str | None = None  # the HTML above the live answer, as shown
        self._live_at: int | None = None  # where the live answer's block starts
        self._render_timer = QTimer(self, singleShot=True, interval=RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self.render)
        self._search_timer = QTimer(self, singleShot=True, interval=150)
        self._search_timer.timeout.connect(self.reload_chats)
        self._build()
        self._model_loaded.connect(self.show_tools_notice)
        self._listener = self._model_loaded.emit
        if hasattr(folio, "model_listeners"):
            folio.model_listeners.append(self._listener)
            self.destroyed.connect(lambda _=None, f=folio, cb=self._listener:
                                   cb in f.model_listeners and f.model_listeners.remove(cb))
        runtime = getattr(folio, "_runtime", None)  # no lock: a load may be holding it
        self.show_tools_notice(getattr(runtime, "info", None))

    def place_model_picker(self, combo: QWidget) -> None:
        """Put this chat's model choice (the Model tab's list of model files and providers)
        at the top of the conversation, before the scope: where people look for it."""
        label = QLabel("&Model:")
        label.setBuddy(combo)
        if isinstance(combo, QComboBox):
            combo.setMinimumContentsLength(8)  # it elides; the open list shows all
        self.top_grid.addWidget(label, 0, 0)
        self.top_grid.addWidget(combo, 0, 1)
        self.model_label = label
        self.model_combo = combo
        QWidget.setTabOrder(combo, self.scope)  # in the focus chain where it is shown

    @property
    def store(self):
        """The chat store, looked up once: `Folio`'s properties share one lock, which a
        model load holds for seconds, so asking `folio.store` on the GUI thread each time
        froze the window while the model loaded (benchmarks/bench_gui.py --why)."""
        if self._store is None:
            self._store = self.folio.store
        return self._store

    # -- layout -------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)

        # The list of chats: the window puts it in its sidebar's Chats section, with the
        # New button in the section's header.
        self.chats_pane = side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(6, 0, 6, 6)
        self.new_btn = QPushButton("New")
        self.new_btn.setToolTip("New chat (Ctrl+N)")
        self.new_btn.setAccessibleName("New chat")
        self.new_btn.clicked.connect(self.new_chat)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats (Ctrl+F)")
        self.search.setAccessibleName("Search chats")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        sl.addWidget(self.search)
        self.chat_list = QListWidget()
        self.chat_list.setAccessibleName("Chats")
        self.chat_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.chat_list.customContextMenuRequested.connect(self._chat_menu)
        self.chat_list.currentItemChanged.connect(self._chat_selected)
        self.chat_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.chat_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.chat_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        sl.addWidget(self.chat_list, 1)
        row = QHBoxLayout()
        self.rename_btn = QPushButton("Rename…")
        self.rename_btn.setAccessibleName("Rename chat")
        self.rename_btn.clicked.connect(self.rename_chat)
        self.delete_btn = QPushButton("Delete…")
        self.delete_btn.setAccessibleName("Delete chat")
        self.delete_btn.clicked.connect(self.delete_chat)
        row.addWidget(self.rename_btn)
        row.addWidget(self.delete_btn)
        row.addStretch(1)
        sl.addLayout(row)

        main = QWidget()
        ml = QVBoxLayout(main)
        ml.setContentsMargins(6, 6, 6, 6)
        # Above the conversation: which model answers (place_model_picker) and from what.
        self.top_grid = top = QGridLayout()
        top.setColumnStretch(1, 1)
        scope_label = QLabel("&Answer from:")
        top.addWidget(scope_label, 1, 0)
        self.scope = ElidingComboBox()
        self.scope.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.scope.setMinimumContentsLength(8)  # it elides; the open list shows all
        scope_label.setBuddy(self.scope)
        self.scope.setAccessibleName("Answer from")
        for mode, label in SCOPE_LABELS:
            self.scope.addItem(label, mode)
        self.scope.activated.connect(self._scope_chosen)
        top.addWidget(self.scope, 1, 1)
        ml.addLayout(top)  # (Export to Markdown is in the Chat menu)

        self.view = QTextBrowser()
        self.view.setAccessibleName("Conversation")
        self.view.setOpenLinks(False)
        self.view.anchorClicked.connect(self._on_link)
        self.view.viewport().installEventFilter(self)  # a source's passage on hover
        self.view.setPlaceholderText("")
        self.view.document().setUndoRedoEnabled(False)  # live edits must not pile up
        ml.addWidget(self.view, 1)

        self.state_label = QLabel()
        self.state_label.setAccessibleName("Answer status")
        self.state_label.setWordWrap(True)  # a long error must not widen the whole window
        self.state_label.hide()
        ml.addWidget(self.state_label)

        # A tool call that needs the user's approval: the exact call, Allow / Deny.
        self.approval_box = QFrame()
        self.approval_box.setFrameShape(QFrame.Shape.StyledPanel)
        self.approval_box.setAccessibleName("Tool call approval")
        al = QHBoxLayout(self.approval_box)
        al.setContentsMargins(6, 4, 6, 4)
        self.approval_label = QLabel()
        self.approval_label.setWordWrap(True)
        self.approval_label.setTextFormat(Qt.TextFormat.RichText)
        self.approval_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        al.addWidget(self.approval_label, 1)
        self.allow_btn = QPushButton("Allow")
        self.allow_btn.setAccessibleName("Allow tool call")
        self.allow_btn.clicked.connect(lambda: self.decide(True))
        self.deny_btn = QPushButton("Deny")
        self.deny_btn.setAccessibleName("Deny tool call")
        self.deny_btn.clicked.connect(lambda: self.decide(False))
        al.addWidget(self.allow_btn)
        al.addWidget(self.deny_btn)
        self.approval_box.hide()
        ml.addWidget(self.approval_box)

        self.tools_notice = QLabel()
        self.tools_notice.setAccessibleName("Tools")
        self.tools_notice.setWordWrap(True)
        self.tools_notice.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.tools_notice.hide()
        ml.addWidget(self.tools_notice)

        row = QHBoxLayout()
        self.input = QuestionEdit()
        self.input.setAccessibleName("Question")
        self.input.setPlaceholderText("Ask about your documents…  (Enter sends, Shift+Enter: "
                                      "new line)")
        self.input.setFixedHeight(self.input.fontMetrics().lineSpacing() * 3 + 16)
        self.input.submitted.connect(self.send)
        self.input.escaped.connect(self.stop)
        row.addWidget(self.input, 1)
        buttons = QVBoxLayout()
        self.send_btn = QPushButton("Send")
        self.send_btn.setAccessibleName("Send question")
        self.send_btn.setDefault(True)
        self.send_btn.clicked.connect(self.send)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setAccessibleName("Stop answer")
        self.stop_btn.setToolTip("Stop the answer (Esc)")
        self.stop_btn.clicked.connect(self.stop)
        self.stop_btn.hide()
        self.regen_btn = QPushButton("Regenerate")
        self.regen_btn.setAccessibleName("Regenerate answer")
        self.regen_btn.clicked.connect(self.regenerate)
        buttons.addWidget(self.send_btn)
        buttons.addWidget(self.stop_btn)
        buttons.addWidget(self.regen_btn)
        row.addLayout(buttons)
        ml.addLayout(row)
        outer.addWidget(main)
        self._update_buttons()

    # -- chats --------------------------------------------------------------------------

    def reload_chats(self, select: int | None = None) -> None:
        keep = select if select is not None else self.chat_id
        chats = self.store.list_chats(self.search.text())
        self.chat_list.blockSignals(True)
        self.chat_list.clear()
        for c in chats:
            item = QListWidgetItem(c.title)
            item.setData(CHAT_ROLE, c.id)
            item.setToolTip(f"{c.title}\n{time.strftime('%Y-%m-%d %H:%M', time.localtime(c.updated_at))}")
            self.chat_list.addItem(item)
            if c.id == keep:
                self.chat_list.setCurrentItem(item)
        self.chat_list.blockSignals(False)

    def _chat_selected(self, item, _previous=None) -> None:
        if item is not None:
            self.open_chat(item.data(CHAT_ROLE))

    def open_chat(self, chat_id: int | None) -> None:
        if chat_id == self.chat_id and chat_id is not None:
            return
        if self.job is not None and chat_id != self.chat_id:
            self.stop()
        try:
            chat = self.store.get_chat(chat_id) if chat_id is not None else None
        except KeyError:
            chat = None
        self.chat_id = chat.id if chat else None
        self.editing_id = None
        self.reload_messages()
        self._show_scope(chat.scope if chat else None)
        for i in range(self.chat_list.count()):
            if self.chat_list.item(i).data(CHAT_ROLE) == self.chat_id:
                self.chat_list.blockSignals(True)
                self.chat_list.setCurrentRow(i)
                self.chat_list.blockSignals(False)
        self.chat_changed.emit(self.chat_id)
        self._update_buttons()

    def new_chat(self) -> int:
        chat = self.store.create_chat()
        self.search.clear()
        self.reload_chats(select=chat.id)
        self.open_chat(chat.id)
        self.input.setFocus()
        return chat.id

    def rename_chat(self) -> None:
        if self.chat_id is None:
            return
        title, ok = QInputDialog.getText(self, "Rename chat", "Title:",
                                         text=self.store.get_chat(self.chat_id).title)
        if ok and title.strip():
            self.store.rename_chat(self.chat_id, title.strip())
            self.reload_chats()

    def delete_chat(self) -> None:
        if self.chat_id is None:
            return
        title = self.store.get_chat(self.chat_id).title
        if QMessageBox.question(self, "Delete chat", f"Delete the chat “{title}” and its "
                                "messages?") != QMessageBox.StandardButton.Yes:
            return
        if self.job is not None:
            self.stop()
        self.store.delete_chat(self.chat_id)
        self.chat_id = None
        self.reload_chats()
        first = self.chat_list.item(0)
        self.open_chat(first.data(CHAT_ROLE) if first else None)

    def _chat_menu(self, pos: QPoint) -> None:
        item = self.chat_list.itemAt(pos)
        if item is None:
            return
        self.open_chat(item.data(CHAT_ROLE))
        menu = QMenu(self)
        menu.addAction("Rename…", self.rename_chat)
        menu.addAction("Export to Markdown…", self.export_markdown)
        menu.addSeparator()
        menu.addAction("Delete…", self.delete_chat)
        menu.exec(self.chat_list.viewport().mapToGlobal(pos))
        menu.deleteLater()  # one menu per right-click: do not keep them all as children

    def export_markdown(self, path: str | None = None) -> str | None:
        if self.chat_id is None:
            return None
        if not path:
            title = self.store.get_chat(self.chat_id).title
            safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip() or "chat"
            path, _ = QFileDialog.getSaveFileName(self, "Export chat", f"{safe}.md",
                                                  "Markdown (*.md)")
            if not path:
                return None
        try:
            Path(path).write_text(self.store.export_markdown(self.chat_id), "utf-8")
        except OSError as exc:
            self.error.emit(f"Could not export the chat: {exc.strerror or exc}", str(exc))
            return None
        self.status.emit(f"Exported to {path}")
        return path

    # -- scope --------------------------------------------------------------------------

    def _show_scope(self, scope: dict | None) -> None:
        scope = scope or {"mode": "all"}
        mode = scope.get("mode", "all")
        idx = [m for m, _ in SCOPE_LABELS].index(mode)
        for i, (m, label) in enumerate(SCOPE_LABELS):
            text = label
            if m == "collections" and mode == m and scope.get("collections"):
                text = "Collections: " + ", ".join(scope["collections"])
            elif m == "documents" and mode == m and scope.get("documents"):
                names = [Path(p).name for p in scope["documents"]]
                text = f"{len(names)} document(s): " + ", ".join(names)
            self.scope.setItemText(i, text)
        self.scope.setCurrentIndex(idx)
        self.scope.setEnabled(self.chat_id is not None)

    def _scope_chosen(self, index: int) -> None:
        if self.chat_id is None:
            return
        mode = self.scope.itemData(index)
        chat = self.store.get_chat(self.chat_id)
        scope = {"mode": mode, "collections": [], "documents": []}
        if mode == "collections":
            dlg = ChecklistDialog("Answer from these collections",
                                  [(c, c) for c in self.collections_provider()],
                                  chat.scope.get("collections", []), self)
            if not dlg.exec() or not dlg.chosen():
                self._show_scope(chat.scope)
                return
            scope["collections"] = dlg.chosen()
        elif mode == "documents":
            dlg = ChecklistDialog("Answer from these documents", self.documents_provider(),
                                  chat.scope.get("documents", []), self)
            if not dlg.exec() or not dlg.chosen():
                self._show_scope(chat.scope)
                return
            scope["documents"] = dlg.chosen()
        self.set_scope(scope)

    def set_scope(self, scope: dict) -> None:
        if self.chat_id is None:
            self.new_chat()
        chat = self.store.update_chat(self.chat_id, scope=scope)
        self._show_scope(chat.scope)

    # -- asking -------------------------------------------------------------------------

    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.job is not None:
            return
        if self.chat_id is None:
            self.new_chat()
        chat_id, editing = self.chat_id, self.editing_id
        self.input.clear()
        self.editing_id = None
        if editing is not None:
            self._start(lambda eng, cancel: eng.edit_and_resend(chat_id, editing, text,
                                                                cancel=cancel),
                        question=text, hide_from=editing)
        else:
            self._start(lambda eng, job: self._ask_events(eng, job, chat_id, text),
                        question=text, hide_from=None, with_job=True)

    def ask(self, question: str) -> None:
        self.input.setPlainText(question)
        self.send()

    def regenerate(self) -> None:
        if self.chat_id is None or self.job is not None:
            return
        users = [m for m in self.messages if m.role == "user"]
        if not users:
            return
        chat_id = self.chat_id
        self._start(lambda eng, cancel: eng.regenerate(chat_id, cancel=cancel), question=None,
                    hide_from=users[-1].id + 1)

    def edit(self, message_id: int) -> None:
        """Put an earlier question back in the box; sending it replaces what followed."""
        msg = next((m for m in self.messages if m.id == message_id), None)
        if msg is None or self.job is not None:
            return
        self.editing_id = message_id
        self.input.setPlainText(msg.content)
        self.input.setFocus()
        self._set_state("Editing an earlier question: Send replaces it and the answers after "
                        "it. Esc cancels.")

    def _ask_events(self, engine, job, chat_id: int, question: str):
        """On the worker: the question answered with tools when the chat's model can call
        them (calls that need approval are asked in the chat), else the cited answer."""
        from app.core.chat.tool_chat import ask_auto, default_runner

        folio = self.folio

        def runner():  # only when the model can call tools: MCP servers start on first use
            if self.tools:
                return self.tools()
            sources = folio.mcp_tools()
            for problem in sources.problems:
                log.warning("MCP tool source: %s", problem)
            return default_runner(lambda: folio.library, sources.tools, folio.reranker)

        def approve(tool, call) -> bool:
            request = ApprovalRequest(tool, call)
            job.report(ChatEvent("approval", stats={"request": request}))
            return request.wait(job.cancel)

        yield from ask_auto(engine, chat_id, question, runner, approve=approve,
                            cancel=job.cancel)

    def _start(self, run, question: str | None, hide_from: int | None,
               with_job: bool = False) -> None:
        self.about_to_answer.emit()
        folio = self.folio

        def work(job):
            engine = folio.chat  # opens the library and loads the model on this thread
            yield from run(engine, job if with_job else job.cancel)

        self.stream = {"question": question, "text": "", "sources": [], "status": "streaming",
                       "hide_from": hide_from, "message_id": None, "error": "",
                       "typed": question is not None, "tools": []}
        self.job = job = self.workers.submit(work, pool="llm", name="answer")
        job.yielded.connect(self._on_event)
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        self._set_state("Thinking…" if folio._runtime is not None else "Loading the model…")
        self._update_buttons()
        self.busy_changed.emit(True)
        self.render(scroll=True)

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
            self._end_approval(False)
            self._set_state("Stopping…")
        elif self.editing_id is not None:
            self.editing_id = None
            self.input.clear()
            self._set_state("")

    @property
    def busy(self) -> bool:
        return self.job is not None

    # -- tools --------------------------------------------------------------------------

    def show_tools_notice(self, info) -> None:
        """Say whether the loaded model can use tools (None: no model loaded yet)."""
        if info is None:
            self.tools_notice.hide()
            return
        if supports_tools(getattr(info, "chat_template", None)):
            self.tools_notice.setText("This model may use tools: search your documents, "
                                      "calculator. Other tools ask you first.")
        else:
            self.tools_notice.setText(NO_TOOLS_NOTICE)
        self.tools_notice.setToolTip(getattr(info, "name", "") or "")
        self.tools_notice.show()

    def decide(self, allowed: bool) -> None:
        """The user's answer to the tool call waiting for approval."""
        if self.approval is None:
            return
        self.status.emit("Tool call allowed" if allowed else "Tool call denied")
        self._end_approval(allowed)
        if self.job is not None:
            self._set_state("Running the tool…" if allowed else "Denied; the model goes on…")

    def _end_approval(self, allowed: bool) -> None:
        request, self.approval = self.approval, None
        if request is not None:
            request.decide(allowed)
        if self.stream is not None:
            for t in self.stream.get("tools", ()):
                if t.get("waiting"):
                    t["waiting"] = False
                    t["decision"] = "allowed" if allowed else "denied"
            self.render()
        self.approval_box.hide()

    def _on_tool_event(self, ev) -> None:
        tools = self.stream["tools"]
        if ev.kind == "tools":
            self.show_tools_notice(getattr(getattr(self.folio, "_runtime", None), "info",
                                           None))
        elif ev.kind == "tool_call":
            tools.append({"call": ev.stats.get("call", {}), "result": None,
                          "needs_approval": bool(ev.stats.get("needs_approval"))})
            self._set_state(f"Calling {ev.stats.get('call', {}).get('name') or 'a tool'}…")
        elif ev.kind == "tool_result" and tools:
            tools[-1]["result"] = ev.stats.get("result")
            self._set_state("Writing…")
        elif ev.kind == "approval":
            request = ev.stats["request"]
            if self.job is None or self.job.cancel.is_set():
                request.decide(False)
                return
            self.approval = request
            if tools:
                tools[-1]["waiting"] = True
            self.approval_label.setText(
                "<b>Allow this tool call?</b><br>" + _call_html(request.call))
            self.approval_box.show()
            self._set_state(f"Waiting for you to allow or deny {request.tool}.")
            self.approval_requested.emit(request)
        self.render(scroll=True)

    def _on_event(self, ev) -> None:
        if self.stream is None:
            if ev.kind == "approval":  # nothing to show it in: a refusal
                ev.stats["request"].decide(False)
            return
        if ev.kind in ("tools", "tool_call", "tool_result", "approval"):
            self._on_tool_event(ev)
        elif ev.kind == "query":
            self._set_state(f"Searching for: {ev.text}")
        elif ev.kind == "sources":
            self.stream["sources"] = ev.sources
            self.sources_received.emit(ev.sources)
            self._set_state(f"Found {len(ev.sources)} passage(s); writing…")
        elif ev.kind == "token":
            self.stream["text"] += ev.text
            self.stream["message_id"] = ev.message_id
            self.token_received.emit(ev.text)
            if not self._render_timer.isActive():
                self._render_timer.start()
        elif ev.kind == "done":
            self.stream["text"] = ev.text or self.stream["text"]
            self.stream["status"] = "cancelled" if ev.stats.get("finish_reason") == "cancelled" \
                else "complete"
            self.stream["final"] = ev
        elif ev.kind == "error":
            self.stream["error"] = ev.text
            self.error.emit(ev.text, ev.text)

    def _on_finished(self, _result) -> None:
        final = self.stream.get("final") if self.stream else None
        self._end()
        self.answer_finished.emit(final)

    def _on_failed(self, message: str) -> None:
        job, stream = self.job, self.stream or {}
        question = stream["question"] if stream.get("typed") else None
        editing = stream.get("hide_from")
        self._end()
        self._keep_unsent(question, editing)
        self.error.emit(f"The answer failed: {message}", job.error_detail if job else message)
        self.answer_finished.emit(None)

    def _keep_unsent(self, question: str | None, editing: int | None) -> None:
        """A job that fails before the engine stored the question (the model would not
        load, say) must not lose what was typed: put it back in the box to send again."""
        if not question or self.input.toPlainText().strip():
            return
        stored = [m.content for m in self.messages if m.role == "user"]
        if stored and stored[-1] == question:
            return
        if editing is not None and any(m.id == editing for m in self.messages):
            self.editing_id = editing  # still an edit of that question when sent again
        self.input.setPlainText(question)

    def _end(self) -> None:
        self._end_approval(False)
        self.job = None
        state = self.stream or {}
        self.stream = None
        self._render_timer.stop()
        self.reload_chats()
        self.reload_messages()
        if state.get("status") == "cancelled":
            self._set_state("Stopped. The answer so far is kept.")
        else:
            self._set_state(state.get("error", ""))
        self._update_buttons()
        self.busy_changed.emit(False)

    def _set_state(self, text: str) -> None:
        self.state_label.setText(text)
        self.state_label.setVisible(bool(text))
        if text:
            self.status.emit(text)

    def _update_buttons(self) -> None:
        busy = self.job is not None
        self.send_btn.setVisible(not busy)
        self.stop_btn.setVisible(busy)
        has_q = any(m.role == "user" for m in self.messages)
        self.regen_btn.setEnabled(not busy and has_q)
        self.rename_btn.setEnabled(self.chat_id is not None)
        self.delete_btn.setEnabled(self.chat_id is not None)

    # -- summaries ----------------------------------------------------------------------

    def summarize(self, path: str) -> None:
        """Summarise a document into the current chat (a new one if none is open)."""
        if self.job is not None:
            self.status.emit("Wait for the current answer to finish, or stop it.")
            return
        if self.chat_id is None:
            self.new_chat()
        chat_id, folio, name = self.chat_id, self.folio, Path(path).name

        def work(job):
            engine = folio.chat
            final = None
            for ev in engine.summarize(path, cancel=job.cancel):
                if ev.kind == "error":
                    raise RuntimeError(ev.text)
                if ev.kind == "done":
                    final = ev
                yield ev
            if final is not None and final.text:
                folio.store.add_message(chat_id, "user", f"Summarise {name}",
                                        meta={"summary_request": path})
                folio.store.add_message(chat_id, "assistant",
                                        f"**Summary of {name}**\n\n{final.text}",
                                        meta={"summary_of": path})
            return final

        self.stream = {"question": f"Summarise {name}", "text": "", "sources": [],
                       "status": "streaming", "hide_from": None, "message_id": None,
                       "error": ""}
        self.job = job = self.workers.submit(work, pool="llm", name="summarise")
        job.yielded.connect(lambda ev: self._on_summary_event(ev, name))
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        self._set_state(f"Summarising {name}…")
        self._update_buttons()
        self.busy_changed.emit(True)
        self.render(scroll=True)

    def _on_summary_event(self, ev, name: str) -> None:
        """Progress goes to the state line; the final event is kept so `answer_finished`
        carries it, as after a question (None there means the work failed)."""
        if self.stream is None:
            return
        if ev.kind == "progress":
            self._set_state(f"Summarising {name}: {ev.text} ({ev.done}/{ev.total})")
        elif ev.kind == "done":
            self.stream["final"] = ev
            if ev.stats.get("cancelled"):
                self.stream["status"] = "cancelled"

    # -- rendering ----------------------------------------------------------------------

    def changeEvent(self, event) -> None:
        """Light/dark switch: the conversation's colours come from the palette; redraw."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._html_cache.clear()
            self.render()

    def reload_messages(self) -> None:
        self.messages = self.store.messages(self.chat_id) if self.chat_id is not None else []
        self.render(scroll=True)
        self._update_buttons()

    def render(self, scroll: bool = False) -> None:
        """Show the conversation. While an answer streams, only its own block is replaced
        (the earlier messages stay laid out): re-setting a long chat's whole HTML at every
        render would cost the GUI thread more the longer the chat grows."""
        bar = self.view.verticalScrollBar()
        at_bottom = scroll or bar.value() >= bar.maximum() - 4
        pos = bar.value()
        doc = self.view.document()
        style = self._style()
        head = self._head_html()
        if doc.defaultStyleSheet() != style:
            doc.setDefaultStyleSheet(style)  # applies to setHtml and insertHtml alike
            self._shown_head = None
        if self.stream is not None and self._live_at is not None and head == self._shown_head:
            cursor = QTextCursor(doc)
            cursor.setPosition(self._live_at)
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.insertHtml(self._live_html())  # replaces the previous live block
        else:
            self.view.setHtml(head)
            self._shown_head = head
            self._live_at = None
            if self.stream is not None:
                cursor = QTextCursor(doc)
                cursor.movePosition(QTextCursor.MoveOperation.End)
                self._live_at = cursor.position()
                cursor.insertHtml(self._live_html())
        bar.setValue(bar.maximum() if at_bottom else pos)

    def conversation_html(self) -> str:
        """The whole conversation as one HTML document (what the view shows)."""
        return f"<style>{self._style()}</style>" + self._head_html() + self._live_html()

    def _colors(self) -> tuple[str, str]:
        pal = self.palette()
        return (pal.color(QPalette.ColorRole.PlaceholderText).name(),
                pal.color(QPalette.ColorRole.AlternateBase).name())

    def _style(self) -> str:
        muted, user_bg = self._colors()
        # Code wraps rather than scrolling the whole conversation sideways.
        return (f".muted{{color:{muted};}} td,th{{padding:2px 6px;}} "
                f"pre{{background:{user_bg}; white-space:pre-wrap;}}")

    def _head_html(self) -> str:
        """Everything above the answer being streamed: the stored messages (each rendered
        once and cached), or the empty chat's hint."""
        muted, user_bg = self._colors()
        if self.chat_id is None and self.stream is None:
            return ("<p class='muted' align='center'><br><br>Ask a question about your "
                    "documents.<br>Answers cite the passages they use; click a source to "
                    "open it.</p>")
        s = self.stream
        hide_from = s["hide_from"] if s else None
        last_user = max((m.id for m in self.messages if m.role == "user"), default=None)
        parts = []
        for m in self.messages:
            if hide_from is not None and m.id >= hide_from:
                continue
            key = (m.id, m.status, len(m.content), m.id == last_user, muted)
            if key not in self._html_cache:
                self._html_cache[key] = self._message_html(m, last_user, user_bg, muted)
            parts.append(self._html_cache[key])
        return "".join(parts)

    def _live_html(self) -> str:
        """The question being answered and the answer so far, with its sources."""
        s = self.stream
        if s is None:
            return ""
        muted, user_bg = self._colors()
        parts = []
        if s["question"]:
            parts.append(self._bubble("You", html.escape(s["question"]).replace("\n", "<br>"),
                                      user_bg))
        body = to_html(s["text"], "src:live:", len(s["sources"])) if s["text"] else \
            "<p class='muted'>…</p>"
        body = _tools_html(s.get("tools", []), user_bg) + body
        provider = getattr(self.folio, "provider", None)  # the one answering now
        remote = _remote_marker(provider.model, provider.name) if provider is not None else ""
        parts.append(self._answer_block("Folio", body, s["sources"], "live", muted,
                                        f"<span class='muted'>{remote}</span>"))
        return "".join(parts)

    def _bubble(self, who: str, body: str, bg: str, extra: str = "") -> str:
        return (f"<table width='100%' cellpadding='8' style='margin-top:8px'>"
                f"<tr><td bgcolor='{bg}'><b>{who}</b>{extra}<br>{body}</td></tr></table>")

    def _answer_block(self, who: str, body: str, sources: list, key, muted: str,
                      extra: str = "", actions: str = "") -> str:
        out = [f"<div style='margin:8px'><b>{who}</b>{extra}{body}"]
        if sources:
            links = []
            _muted, chip = self._colors()
            for s in sources:  # compact chips; hovering one shows its passage
                links.append(f"<a href='src:{key}:{_field(s, 'n')}' "
                             f"style='text-decoration:none'><span style='background-color:"
                             f"{chip}'>&nbsp;{html.escape(source_link_text(s))}&nbsp;</span></a>")
            out.append("<p class='muted'>Sources: " + " &nbsp; ".join(links) + "</p>")
        if actions:
            out.append(f"<p>{actions}</p>")
        out.append("</div>")
        return "".join(out)

    def _message_html(self, m, last_user, user_bg: str, muted: str) -> str:
        if m.role == "user":
            edit = f" &nbsp; <a href='edit:{m.id}'>Edit</a>"
            return self._bubble("You", html.escape(m.content).replace("\n", "<br>") + "",
                                user_bg, f"<span class='muted'> {edit}</span>")
        marker = {"cancelled": " (stopped)", "interrupted": " (interrupted)",
                  "error": " (cut off)" if m.content else " (error)"}.get(m.status, "")
        meta = m.meta or {}
        if meta.get("remote"):  # answered by a provider's model, not on this machine
            marker = _remote_marker(meta.get("model"), meta.get("provider")) + marker
        body = to_html(m.content, f"src:{m.id}:", len(m.sources),
                       code_prefix=f"code:{m.id}:") if m.content else ""
        body = _tools_html((m.meta or {}).get("tool_calls", []), user_bg) + body
        if m.status == "error" and m.error:
            body += f"<p class='muted'>Error: {html.escape(m.error)}</p>"
        elif m.content and not meta.get("no_sources") and not meta.get("tool_calls"):
            if not m.sources:
                body += "<p class='muted'>Answered without your documents.</p>"
            elif f"href='src:{m.id}:" not in body:  # to_html linked no [n] it cites
                body += ("<p class='muted'>This answer cites none of the passages below: "
                         "check them before relying on it.</p>")
        actions = f"<a href='copy:{m.id}'>Copy</a>"
        return self._answer_block("Folio", body, m.sources, m.id, muted,
                                  f"<span class='muted'>{marker}</span>", actions)

    # -- links --------------------------------------------------------------------------

    def _on_link(self, url: QUrl) -> None:
        scheme, _, rest = url.toString().partition(":")
        if scheme == "src":
            key, _, n = rest.partition(":")
            self.show_source(key, int(n))
        elif scheme == "copy":
            msg = next((m for m in self.messages if str(m.id) == rest), None)
            if msg is not None:
                QGuiApplication.clipboard().setText(msg.content)
                self.status.emit("Answer copied")
        elif scheme == "code":
            key, _, index = rest.partition(":")
            msg = next((m for m in self.messages if str(m.id) == key), None)
            blocks = code_blocks(msg.content) if msg is not None else []
            if index.isdigit() and int(index) < len(blocks):
                QGuiApplication.clipboard().setText(blocks[int(index)])
                self.status.emit("Code copied")
        elif scheme == "edit":
            self.edit(int(rest))

    def source_for(self, key: str, n: int) -> dict | None:
        if key == "live":
            sources = self.stream["sources"] if self.stream else []
            found = next((s for s in sources if s["n"] == n), None)
            return dict(found) if found else None
        msg = next((m for m in self.messages if str(m.id) == key), None)
        if msg is None:
            return None
        s = next((s for s in msg.sources if s.n == n), None)
        if s is None:
            return None
        return {"n": s.n, "path": s.path, "page": s.page, "page_end": s.page_end,
                "section": s.section, "text": s.text, "score": s.score, "chunk_id": s.chunk_id}

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        """Hovering a source link or an [n] marker shows the passage it points to."""
        if event.type() == QEvent.Type.ToolTip and watched is self.view.viewport():
            text = self.source_preview(self.view.anchorAt(event.pos()))
            if text:
                QToolTip.showText(event.globalPos(), text, self.view)
            else:
                QToolTip.hideText()
            return True
        return super().eventFilter(watched, event)

    def source_preview(self, anchor: str) -> str:
        """The tooltip for a link in the conversation: for a source, where it is and the
        passage (rich text, escaped; long ones cut), else ""."""
        scheme, _, rest = anchor.partition(":")
        key, _, n = rest.partition(":")
        if scheme != "src" or not n.isdigit():
            return ""
        src = self.source_for(key, int(n))
        return source_preview_html(src) if src is not None else ""

    def show_source(self, key: str, n: int) -> None:
        src = self.source_for(str(key), n)
        if src is not None:
            self.open_source.emit(src)

    def copy_last_answer(self) -> None:
        answers = [m for m in self.messages if m.role == "assistant"]
        if answers:
            QGuiApplication.clipboard().setText(answers[-1].content)
